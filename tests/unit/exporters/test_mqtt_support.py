"""MQTT building blocks: backoff with jitter, topics, power payloads, TLS, the [mqtt] config."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from infergy.config.settings import SECRET_MASK, MqttSettings, Settings, load_settings
from infergy.core.backoff import Backoff
from infergy.errors import ConfigError
from infergy.exporters.mqtt import MqttPublisher
from infergy.exporters.mqtt_support import MqttTopics, power_payload, tls_context
from infergy.exporters.outbox import Outbox
from infergy.store.db import Store


def test_backoff_doubles_from_min_to_max_with_jitter_in_the_upper_half() -> None:
    backoff = Backoff(0.5, 8.0, random.Random(1))
    delays = [backoff.next_delay_s() for _ in range(10)]
    bases = [0.5, 1, 2, 4, 8, 8, 8, 8, 8, 8]
    for delay, base in zip(delays, bases, strict=True):
        assert base / 2 <= delay <= base
    assert len(set(delays)) == len(delays)  # jittered, not lock-step
    backoff.reset()
    assert 0.25 <= backoff.next_delay_s() <= 0.5


def test_backoff_survives_very_many_failures() -> None:
    backoff = Backoff(0.1, 60.0, random.Random(2))
    for _ in range(5000):
        delay = backoff.next_delay_s()
    assert 30.0 <= delay <= 60.0


def test_topics() -> None:
    t = MqttTopics("site/infergy/edge-01")
    assert t.status == "site/infergy/edge-01/status"
    assert t.power == "site/infergy/edge-01/power"
    assert t.commands == "site/infergy/edge-01/cmd/+"
    assert t.reply("r1") == "site/infergy/edge-01/reply/r1"
    assert t.of("runs/latest") == "site/infergy/edge-01/runs/latest"


def test_power_payload_is_json_with_null_for_non_finite_readings() -> None:
    body = json.loads(power_payload({"gpu0": 312.123456, "ac": math.nan, "gpu1": math.inf}))
    assert body["power_w"] == {"gpu0": 312.123, "ac": None, "gpu1": None}
    assert body["t_unix_s"] > 1.7e9
    assert body["simulated"] == {"gpu0": False, "ac": False, "gpu1": False}


def test_power_payload_marks_every_simulated_source() -> None:
    body = json.loads(power_payload({"gpu0": 312.0, "ac": 176.0}, simulated={"ac"}))
    assert body["simulated"] == {"gpu0": False, "ac": True}, body


def test_no_tls_unless_asked_and_unreadable_tls_files_are_config_errors(tmp_path: Path) -> None:
    assert tls_context(MqttSettings()) is None
    assert tls_context(MqttSettings(tls=True)) is not None  # the system CAs
    with pytest.raises(ConfigError, match="TLS files"):
        tls_context(MqttSettings(tls_ca=tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError):
        tls_context(MqttSettings(tls_cert=junk))


def test_publisher_names_its_topics_and_client_id_from_the_node(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        pub = MqttPublisher(MqttSettings(topic_root="a/b"), node="n1", outbox=Outbox(store))
        assert pub.topics.status == "a/b/n1/status"
        assert pub._client_id == "infergy-n1"
        assert pub.connected is False
        health = pub.health()
        assert (health.connected, health.published_total, health.last_error) == (False, 0, None)


# -- the [mqtt] config section -----------------------------------------------------------------


def test_mqtt_defaults_are_off_and_local() -> None:
    m = Settings().mqtt
    assert (m.enabled, m.host, m.port, m.use_tls, m.topic_root) == (
        False,
        "localhost",
        1883,
        False,
        "infergy",
    )
    assert (m.reconnect_min_s, m.reconnect_max_s, m.outbox_max_entries) == (0.5, 60.0, 100_000)


def test_mqtt_from_toml_and_env_with_the_password_masked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[mqtt]\nenabled = true\nhost = "broker"\nusername = "u"\ntls_ca = "~/ca.pem"\n'
    )
    env = {"INFERGY_MQTT__PASSWORD": "hunter2", "INFERGY_MQTT__PORT": "8883", "HOME": "/h"}
    s = load_settings(path, env)
    assert (s.mqtt.host, s.mqtt.port, s.mqtt.username) == ("broker", 8883, "u")
    assert s.mqtt.password is not None and s.mqtt.password.get_secret_value() == "hunter2"
    assert s.mqtt.tls_ca == Path("~/ca.pem").expanduser()
    assert s.mqtt.use_tls  # a CA file turns TLS on
    dumped = json.dumps(s.dump_masked())
    assert "hunter2" not in dumped
    assert s.dump_masked()["mqtt"]["password"] == SECRET_MASK
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.mqtt)


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"reconnect_min_s": 5, "reconnect_max_s": 1}, "reconnect_max_s"),
        ({"tls_key": "/k.pem"}, "tls_key"),
        ({"password": "p"}, "username"),
        ({"topic_root": "/infergy"}, "topic_root"),
        ({"topic_root": "a//b"}, "topic_root"),
        ({"topic_root": "a/#"}, "topic_root"),
        ({"topic_root": "+"}, "topic_root"),
        ({"client_id": "has space"}, "client_id"),
        ({"port": 0}, "port"),
        ({"power_interval_s": 0.01}, "power_interval_s"),
        ({"outbox_max_entries": 0}, "outbox_max_entries"),
    ],
)
def test_bad_mqtt_settings_are_config_errors(values: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings(None, {}, overrides={"mqtt": values})
