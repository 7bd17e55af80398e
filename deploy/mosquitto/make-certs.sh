#!/bin/sh
# A private CA and the broker's certificate for an infergy fleet, with openssl.
#   deploy/mosquitto/make-certs.sh OUT_DIR BROKER_NAME [CLIENT ...]
# BROKER_NAME is what the nodes connect to ([mqtt] host): a DNS name or an IP address (it goes
# into the certificate's subjectAltName). Each CLIENT gets a client certificate (CN = CLIENT),
# for brokers with require_certificate. Writes OUT_DIR/infergy-ca.pem (give it to every node:
# [mqtt] tls_ca), OUT_DIR/broker.pem and OUT_DIR/broker.key (the broker's), OUT_DIR/<CLIENT>.pem
# and .key. Keep infergy-ca.key offline. Used by tests/integration/test_fleet_security.py.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 OUT_DIR BROKER_NAME [CLIENT ...]" >&2; exit 2; }
out=$1; broker=$2; shift 2
days=${DAYS:-825}
mkdir -p "$out"
cd "$out"
umask 077
case $broker in
  *[!0-9.]*) san="DNS:$broker" ;;
  *) san="IP:$broker" ;;
esac
[ -f infergy-ca.key ] || openssl req -x509 -newkey rsa:3072 -nodes -keyout infergy-ca.key \
  -out infergy-ca.pem -days "$days" -subj "/CN=infergy fleet CA" 2>/dev/null
sign() {  # sign NAME SUBJECT_ALT_NAME: NAME.key and NAME.pem signed by the CA
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$3" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$2" "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA infergy-ca.pem -CAkey infergy-ca.key -CAcreateserial \
    -out "$1.pem" -days "$days" -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
sign broker "$san" "$broker" serverAuth
for client in "$@"; do
  sign "$client" "DNS:$client" "$client" clientAuth
done
chmod 0644 infergy-ca.pem broker.pem
echo "wrote $out: infergy-ca.pem, broker.pem, broker.key${*:+, client certificates for $*}"
