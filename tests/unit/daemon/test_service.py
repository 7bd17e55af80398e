"""The service's pieces that need no servers: SIGHUP reload and health."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from infergy.config.settings import load_settings
from infergy.daemon.http_models import ComponentHealth
from infergy.daemon.service import Service, _rooted


def test_reload_applies_session_settings_and_names_what_needs_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "infergy.toml"
    path.write_text('[analysis]\nidle_s = 10\n[serve]\nlisten = "127.0.0.1:8765"\n')
    service = Service(load_settings(path, {}), config_path=path, env={})
    path.write_text('[analysis]\nidle_s = 3\n[serve]\nlisten = "127.0.0.1:9999"\n')
    with caplog.at_level(logging.INFO):
        service.reload()
    assert service.settings.analysis.idle_s == 3
    assert "analysis, serve changed; serve apply after a restart" in caplog.text


def test_a_bad_config_on_reload_keeps_the_running_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "infergy.toml"
    path.write_text("[analysis]\nidle_s = 4\n")
    service = Service(load_settings(path, {}), config_path=path, env={})
    path.write_text("[analysis]\nidle_s = -1\nunknown = 2\n")
    with caplog.at_level(logging.ERROR):
        service.reload()
    assert service.settings.analysis.idle_s == 4
    assert "reload refused" in caplog.text


def test_health_before_start_says_the_store_is_not_open() -> None:
    service = Service(load_settings(None, {}), env={})
    health = service.health()
    assert health["api"] == "up"
    store = health["store"]
    assert isinstance(store, ComponentHealth) and store.state == "down", store  # not assumed up


def test_a_relative_output_dir_lives_under_the_state_directory(tmp_path: Path) -> None:
    settings = load_settings(None, {})
    rooted = _rooted(settings, {"STATE_DIRECTORY": str(tmp_path)})
    assert rooted.output.dir == tmp_path / "out"
    absolute = load_settings(None, {}, overrides={"output": {"dir": str(tmp_path / "x")}})
    assert _rooted(absolute, {}).output.dir == tmp_path / "x"
