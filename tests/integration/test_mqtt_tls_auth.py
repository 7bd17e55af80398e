"""TLS with a private CA and password authentication, against a real mosquitto."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.integration.mosquitto import running_broker
from tests.integration.mqtt_support import background, make_publisher, result, until

pytestmark = pytest.mark.integration


def _run(*cmd: str, cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certs(d: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d.mkdir()
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
         "-out", "ca.pem", "-days", "2", "-subj", "/CN=infergy-test-ca", cwd=d)  # fmt: skip
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
         "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)  # fmt: skip


# paho-mqtt 2.2 leaks the SSLSocket of a failed handshake (_ssl_wrap_socket raises from
# do_handshake() without closing it); the garbage collector closes it, with a ResourceWarning.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_tls_with_a_private_ca_delivers_results(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    make_certs(certs)
    conf = f"cafile {certs}/ca.pem\ncertfile {certs}/server.pem\nkeyfile {certs}/server.key\n"

    async def scenario() -> None:
        with running_broker(tmp_path / "b", extra_conf=conf) as broker:
            pub, _, store = make_publisher(tmp_path, broker.port, tls_ca=certs / "ca.pem")
            async with background(pub.run()):
                await until(lambda: pub.connected, 10, "a TLS connection")
                pub.enqueue_result(result(1))
                assert await pub.flush(5)
            store.close()
            # and without the CA the broker's certificate is refused: retried, never connected
            pub, _, store = make_publisher(tmp_path / "x", broker.port, tls=True)
            async with background(pub.run()):
                await until(lambda: pub.health().connect_failures_total >= 2, 10)
                assert not pub.connected
                assert "CERTIFICATE_VERIFY_FAILED" in (pub.health().last_error or "")
            store.close()

    (tmp_path / "x").mkdir()
    asyncio.run(scenario())


def test_password_authentication_and_a_wrong_password(tmp_path: Path) -> None:
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed")
    passwords = tmp_path / "passwd"
    passwords.touch()
    _run("mosquitto_passwd", "-b", str(passwords), "infergy", "s3cret pass", cwd=tmp_path)
    conf = f"password_file {passwords}\n"

    async def scenario() -> None:
        with running_broker(tmp_path / "b", extra_conf=conf) as broker:
            # the helper's config says allow_anonymous true; password_file still checks users
            good = {"username": "infergy", "password": SecretStr("s3cret pass")}
            pub, _, store = make_publisher(tmp_path, broker.port, **good)
            async with background(pub.run()):
                await until(lambda: pub.connected, 10)
                pub.enqueue_result(result(7))
                assert await pub.flush(5)
            store.close()
            bad = {"username": "infergy", "password": SecretStr("wrong")}
            (tmp_path / "x").mkdir()
            pub, _, store = make_publisher(tmp_path / "x", broker.port, **bad)
            async with background(pub.run()):
                await until(lambda: pub.health().connect_failures_total >= 2, 10)
                assert not pub.connected
                error = pub.health().last_error or ""
                assert "wrong" not in error
                assert json.dumps(pub.settings.model_dump(mode="json")).count("wrong") == 0
            store.close()

    asyncio.run(scenario())
