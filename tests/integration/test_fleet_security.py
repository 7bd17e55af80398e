"""The shipped mosquitto config (deploy/mosquitto/) against a real mosquitto: TLS, passwords, ACL.

Certificates come from the shipped ``make-certs.sh`` (openssl) into the test's folder, the
passwords from ``mosquitto_passwd``, the ACL is the shipped file as it is, and the broker's
config is the shipped file with its paths and port replaced. Against it: anonymous clients and
wrong passwords are refused (``infergy fleet`` says so in one line, exit 2), a node logged in
with another node's credentials is refused its own topics (and says so, its results kept), a
node hears only its own commands, and only the controller can command.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pydantic import SecretStr

from infergy.config.settings import MqttSettings
from infergy.daemon.jobs import JobSpec
from infergy.daemon.mqtt_commands import CommandHandler
from infergy.exporters.mqtt import MqttPublisher
from infergy.exporters.outbox import Outbox
from infergy.store.db import Store
from tests.integration.mosquitto import Mosquitto, running_broker
from tests.integration.mqtt_support import background, until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "mosquitto"
USERS = ("infergy-fleet", "infergy-viewer", "n1", "n2")


class Fleet:
    """The broker as deployed, and the credentials of its users."""

    def __init__(self, broker: Mosquitto, tmp: Path) -> None:
        self.broker, self.tmp = broker, tmp
        self.ca = tmp / "certs" / "infergy-ca.pem"

    def password(self, user: str) -> str:
        return f"pw of {user}"

    def client(self, user: str | None, password: str | None = None, **kw: Any) -> aiomqtt.Client:
        tls = ssl.create_default_context(cafile=self.ca)
        pw = password if password is not None else (self.password(user) if user else None)
        return aiomqtt.Client("127.0.0.1", self.broker.port, username=user, password=pw,
                              tls_context=tls, timeout=3, **kw)  # fmt: skip

    def settings(self, user: str, password: str | None = None) -> MqttSettings:
        return MqttSettings(
            enabled=True, host="127.0.0.1", port=self.broker.port, tls_ca=self.ca,
            username=user, password=SecretStr(password or self.password(user)), timeout_s=2.0,
            keepalive_s=5, reconnect_min_s=0.05, reconnect_max_s=0.3, power_interval_s=3600.0,
        )  # fmt: skip

    def controller_config(self, password: str) -> Path:
        secret = self.tmp / f"ctl-{len(password)}.pw"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        conf = self.tmp / f"ctl-{len(password)}.toml"
        conf.write_text(
            f'[mqtt]\nhost = "127.0.0.1"\nport = {self.broker.port}\ntls_ca = "{self.ca}"\n'
            f'username = "infergy-fleet"\npassword_file = "{secret}"\ntimeout_s = 3.0\n'
        )
        return conf


def _shipped_conf(tmp: Path, port: int) -> str:
    text = (DEPLOY / "infergy.conf").read_text(encoding="utf-8")
    for old, new in (
        ("/etc/mosquitto/infergy.passwd", str(tmp / "passwd")),
        ("/etc/mosquitto/infergy.acl", str(DEPLOY / "infergy.acl")),
        ("/etc/mosquitto/certs/", f"{tmp / 'certs'}/"),
        ("listener 8883", f"listener {port} 127.0.0.1"),
    ):
        assert old in text, f"the shipped config no longer says {old!r}"
        text = text.replace(old, new)
    root = "user root\n" if os.geteuid() == 0 else ""
    return f"{root}log_dest file {tmp / 'broker.log'}\nlog_type all\n{text}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    for tool in ("openssl", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    tmp = tmp_path_factory.mktemp("secure")
    made = subprocess.run([str(DEPLOY / "make-certs.sh"), str(tmp / "certs"), "127.0.0.1"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    passwd = tmp / "passwd"
    passwd.touch()
    for user in USERS:
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, f"pw of {user}"],
                       check=True, capture_output=True, timeout=30)  # fmt: skip
    with running_broker(tmp / "broker", run=False) as broker:
        broker.conf.write_text(_shipped_conf(tmp, broker.port), encoding="utf-8")
        broker.restart()
        yield Fleet(broker, tmp)


def _publisher(
    fleet: Fleet, tmp: Path, node: str, user: str, **kw: Any
) -> tuple[MqttPublisher, Store]:
    store = Store.open(tmp / f"{node}-{user}.db")
    pub = MqttPublisher(fleet.settings(user), node=node,
                        outbox=Outbox(store), **kw)  # fmt: skip
    return pub, store


def _fleet_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "infergy", "fleet", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


# paho-mqtt 2.2 leaks the SSLSocket of a refused connection; the collector closes it, warning.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_anonymous_clients_and_wrong_passwords_are_refused(fleet: Fleet) -> None:
    async def refused(user: str | None, password: str | None) -> str:
        with pytest.raises(aiomqtt.MqttError) as caught:
            async with fleet.client(user, password):
                pass
        return str(getattr(caught.value, "rc", caught.value))

    async def scenario() -> None:
        assert "Not authorized" in await refused(None, None)
        assert "Not authorized" in await refused("n1", "not n1's password")
        async with fleet.client("n1"):  # the right one
            pass
        with pytest.raises(aiomqtt.MqttError):  # and nothing in clear text
            async with aiomqtt.Client("127.0.0.1", fleet.broker.port, username="n1",
                                      password=fleet.password("n1"), timeout=2):  # fmt: skip
                pass

    asyncio.run(scenario())
    done = _fleet_cli("status", "--config", str(fleet.controller_config("wrong")))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done
    assert lines[0] == (
        f"error: the MQTT broker at 127.0.0.1:{fleet.broker.port} refused the connection as "
        "'infergy-fleet': not authorized"
    ), done.stderr
    assert "Traceback" not in done.stderr and len(lines) == 2, done.stderr  # the line + a hint
    # a campaign too: refused before anything is sent, and no campaign folder is left
    job = fleet.tmp / "job.json"
    job.write_text('{"duration": 1}')
    out = fleet.tmp / "refused-campaign"
    done = _fleet_cli("run", "--nodes", "n*", "--job", str(job), "--out", str(out),
                      "--config", str(fleet.controller_config("wrong")))  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert lines[-2].startswith("error: the MQTT broker at") and "not authorized" in lines[-2]
    assert not out.exists(), "a refused campaign left its folder"


def test_a_node_with_another_nodes_credentials_is_refused_its_topics(
    fleet: Fleet, tmp_path: Path
) -> None:
    async def scenario() -> None:
        seen: list[str] = []
        async with fleet.client("infergy-viewer") as viewer:
            await viewer.subscribe("infergy/#", qos=1)
            impostor, store = _publisher(fleet, tmp_path, "n2", "n1")  # n2 logged in as n1
            impostor.enqueue_result({"run_id": "r-kept", "status": "ok"})

            async def watch() -> None:
                async for m in viewer.messages:
                    seen.append(m.topic.value)

            async with background(impostor.run(), watch()):
                await until(lambda: impostor.health().connect_failures_total >= 2, 15,
                            "two refused attempts")  # fmt: skip
                health = impostor.health()
                assert not health.connected, health
                assert "did not deliver this node's own status back" in (health.last_error or "")
                assert "'n1'" in (health.last_error or ""), health.last_error
                assert health.outbox_pending == 0 and store.outbox_count() == 2  # kept
            store.close()
        assert not [t for t in seen if t.startswith("infergy/n2/")], seen

    asyncio.run(scenario())


def test_a_node_hears_only_its_own_commands_and_only_the_controller_commands(
    fleet: Fleet, tmp_path: Path
) -> None:
    asked: dict[str, list[JobSpec]] = {"n1": [], "n2": []}

    def handler(node: str) -> CommandHandler:
        async def submit(spec: JobSpec) -> str:
            asked[node].append(spec)
            return f"{node}-run-{len(asked[node])}"

        return CommandHandler(submit, None, timeout_s=2.0)

    async def scenario() -> dict[str, Any]:
        n1, s1 = _publisher(fleet, tmp_path, "n1", "n1", commands=handler("n1"))
        n2, s2 = _publisher(fleet, tmp_path, "n2", "n2", commands=handler("n2"))
        replies: dict[str, Any] = {}
        async with background(n1.run(), n2.run()):
            await until(lambda: n1.connected and n2.connected, 15, "both nodes")
            # n1 tries to command n2 and to overhear n2's commands; the viewer tries too
            async with fleet.client("n1") as rogue, fleet.client("infergy-viewer") as viewer:
                await rogue.subscribe("infergy/n2/#", qos=1)
                await rogue.publish("infergy/n2/cmd/run", b'{"request_id": "from-n1"}', qos=1)
                await viewer.publish("infergy/n2/cmd/run", b'{"request_id": "from-viewer"}', 1)
                async with fleet.client("infergy-fleet") as controller:
                    await controller.subscribe("infergy/+/reply/+", qos=1)
                    for node in ("n1", "n2"):
                        body = {"request_id": f"ok-{node}", "duration": 1}
                        await controller.publish(f"infergy/{node}/cmd/run", json.dumps(body), 1)
                    async with asyncio.timeout(5):
                        async for m in controller.messages:
                            replies[m.topic.value] = json.loads(m.payload)  # type: ignore[arg-type]
                            if len(replies) == 2:
                                break
                overheard = len(rogue.messages)
            await asyncio.sleep(0.3)  # time for a command that would arrive late
        s1.close()
        s2.close()
        return {"replies": replies, "overheard": overheard}

    got = asyncio.run(scenario())
    assert got["replies"] == {
        "infergy/n1/reply/ok-n1": {"ok": True, "request_id": "ok-n1", "run_id": "n1-run-1"},
        "infergy/n2/reply/ok-n2": {"ok": True, "request_id": "ok-n2", "run_id": "n2-run-1"},
    }, got
    assert asked == {"n1": [JobSpec(duration=1)], "n2": [JobSpec(duration=1)]}, asked
    assert got["overheard"] == 0, "n1 received n2's messages"


def test_the_controller_lists_the_nodes_over_tls_with_its_password(
    fleet: Fleet, tmp_path: Path
) -> None:
    async def scenario() -> subprocess.CompletedProcess[str]:
        n1, store = _publisher(fleet, tmp_path, "n1", "n1")
        async with background(n1.run()):
            await until(lambda: n1.connected, 15, "n1")
            done = await asyncio.to_thread(
                _fleet_cli, "status", "--json", "--config",
                str(fleet.controller_config(fleet.password("infergy-fleet"))),
            )  # fmt: skip
        store.close()
        return done

    done = asyncio.run(scenario())
    assert done.returncode == 0, done.stderr
    nodes = {row["node"]: row["state"] for row in json.loads(done.stdout)}
    assert nodes.get("n1") == "online", nodes
