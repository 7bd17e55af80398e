"""The ``[serve]`` section: listen address, token rules, the token file, defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infergy.config.settings import SECRET_MASK, ServeSettings, load_settings
from infergy.errors import ConfigError

TOKEN = "0123456789abcdef-token"


def serve(env: dict[str, str] | None = None, **overrides: object) -> ServeSettings:
    return load_settings(
        None, env or {}, overrides={"serve": overrides} if overrides else None
    ).serve


def test_defaults_are_loopback_and_no_token() -> None:
    s = serve()
    assert (s.listen, s.host, s.port, s.exposed) == ("127.0.0.1:8765", "127.0.0.1", 8765, False)
    assert s.api_token() is None
    assert (s.max_body_bytes, s.max_queued_jobs, s.stop_timeout_s) == (65536, 16, 30.0)


@pytest.mark.parametrize(
    ("listen", "host", "port", "exposed"),
    [
        ("localhost:80", "localhost", 80, False),
        ("[::1]:8765", "::1", 8765, False),
        ("127.0.0.2:1", "127.0.0.2", 1, False),
        ("0.0.0.0:8765", "0.0.0.0", 8765, True),
        ("[::]:8765", "::", 8765, True),
        ("edge-01.lan:8765", "edge-01.lan", 8765, True),
    ],
)
def test_listen_parses_and_says_whether_it_is_exposed(
    listen: str, host: str, port: int, exposed: bool
) -> None:
    s = serve(listen=listen, token=TOKEN)
    assert (s.host, s.port, s.exposed) == (host, port, exposed)


@pytest.mark.parametrize(
    "listen", ["8765", "host:", ":8765", "h:0", "h:65536", "::1:8765", "a b:1"]
)
def test_bad_listen_values_are_config_errors(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"serve\.listen"):
        serve(listen=listen)


def test_beyond_loopback_without_a_token_is_refused_at_load_time() -> None:
    with pytest.raises(ConfigError, match="beyond loopback") as info:
        load_settings(None, {"INFERGY_SERVE__LISTEN": "0.0.0.0:8765"})
    assert str(info.value).startswith("environment: serve: listen 0.0.0.0:8765 is beyond loopback")
    assert serve(listen="0.0.0.0:8765", token=TOKEN).api_token() == TOKEN


def test_token_and_token_file_are_exclusive_and_short_tokens_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        serve(token=TOKEN, token_file=str(tmp_path / "t"))
    with pytest.raises(ConfigError, match=r"serve\.token"):
        serve(token="short")


def test_the_token_is_masked_everywhere_it_is_shown() -> None:
    settings = load_settings(None, {"INFERGY_SERVE__TOKEN": TOKEN})
    assert settings.serve.api_token() == TOKEN
    assert settings.dump_masked()["serve"]["token"] == SECRET_MASK
    assert TOKEN not in json.dumps(settings.dump_masked())
    assert TOKEN not in repr(settings)
    assert TOKEN not in settings.model_dump_json()


def test_the_token_file_is_read_stripped(tmp_path: Path) -> None:
    path = tmp_path / "api-token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    path.chmod(0o600)
    s = serve(listen="[::]:8765", token_file=str(path))
    assert s.api_token() == TOKEN


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        (None, 0o600, "cannot read"),
        ("", 0o600, "at least 16"),
        ("two words here padding", 0o600, "one word"),
        (TOKEN, 0o644, "readable by other users"),
    ],
)
def test_bad_token_files_are_config_errors(
    tmp_path: Path, content: str | None, mode: int, message: str
) -> None:
    path = tmp_path / "api-token"
    if content is not None:
        path.write_text(content, encoding="utf-8")
        path.chmod(mode)
    with pytest.raises(ConfigError, match=message) as info:
        serve(token_file=str(path)).api_token()
    assert str(path) in str(info.value)
    assert TOKEN not in str(info.value)
    assert info.value.hint


def test_state_dir_defaults_to_systemd_then_the_store(tmp_path: Path) -> None:
    assert serve().state_dir_or_default({"STATE_DIRECTORY": "/var/lib/infergy"}) == Path(
        "/var/lib/infergy"
    )
    home = {"HOME": str(tmp_path)}
    assert serve().state_dir_or_default(home) == tmp_path / ".local" / "state" / "infergy"
    assert serve(state_dir="~/st").state_dir_or_default(home) == Path("~/st").expanduser()


@pytest.mark.parametrize(
    ("key", "value"),
    [("max_body_bytes", 10), ("max_queued_jobs", 0), ("stop_timeout_s", 0)],
)
def test_bounds(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"serve\.{key}"):
        serve(**{key: value})
