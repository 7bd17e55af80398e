#!/usr/bin/env bash
# Debian packages the integration tests start themselves, installed only when missing and
# only when this runs as root with apt-get (make test as root in a container or CI):
#   mosquitto  the MQTT broker of tests/integration/test_mqtt_*.py and test_serve.py
#   prometheus the Prometheus (+ promtool) of test_prometheus_live.py and test_serve.py
#   systemd    systemd-analyze, which checks systemd/infergy.service (test_systemd_unit.py)
# It says what it installs, why, and how it went. SYSTEM_DEPS=no (make test SYSTEM_DEPS=no)
# installs nothing; without root or apt it installs nothing either. The tests that need a
# missing program then skip and say why.
set -uo pipefail
declare -A why=(
  [mosquitto]="MQTT broker for tests/integration/test_mqtt_*.py and test_serve.py"
  [prometheus]="Prometheus for tests/integration/test_prometheus_live.py and test_serve.py"
  [systemd]="systemd-analyze for tests/integration/test_systemd_unit.py"
)
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
[ ${#need[@]} -eq 0 ] && exit 0
say() { echo "system-deps: $*" >&2; }
for p in "${need[@]}"; do say "missing $p: ${why[$p]}"; done
if [ "${SYSTEM_DEPS:-yes}" = no ]; then
  say "SYSTEM_DEPS=no: installing nothing; the tests needing ${need[*]} will skip"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "not root or no apt-get: installing nothing; the tests needing ${need[*]} will skip"
  say "(install them yourself, e.g. sudo apt-get install ${need[*]})"
  exit 0
fi
say "running as root: installing the Debian packages ${need[*]} with apt-get"
say "(make test SYSTEM_DEPS=no to leave the system as it is)"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
apt-get update -qq >"$log" 2>&1 || say "apt-get update failed (going on): $(tail -n 1 "$log")"
if apt-get install -y -qq --no-install-recommends "${need[@]}" >"$log" 2>&1; then
  for p in "${need[@]}"; do
    say "installed $p $(dpkg-query -W -f '${Version}' "$p" 2>/dev/null)"
  done
else
  say "apt-get install ${need[*]} failed: the tests needing them will skip"
  tail -n 5 "$log" | sed 's/^/system-deps:   /' >&2
fi
rm -f "$log"
exit 0
