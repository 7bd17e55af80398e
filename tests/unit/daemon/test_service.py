"""The service's pieces that need no servers: SIGHUP reload and health."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from infergy.config.settings import load_settings
from infergy.core.clock import SessionClock
from infergy.daemon.http_models import ComponentHealth
from infergy.daemon.service import Service, _rooted, restore_last_sessions
from infergy.exporters.telemetry import LiveTelemetry
from infergy.store.db import Store


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


def test_a_reload_of_an_unchanged_config_changes_nothing_and_keeps_the_paths(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As systemd runs it (relative [output] dir, $STATE_DIRECTORY, cwd /) and as a user does
    (``--listen``, ``--state-dir``): SIGHUP said "output, serve changed" and moved later runs'
    files to the working directory."""
    path = tmp_path / "infergy.toml"
    path.write_text('[output]\ndir = "runs"\n[analysis]\nidle_s = 4\n')
    monkeypatch.chdir(tmp_path / "..")  # a working directory that is not the state directory
    state = tmp_path / "state"
    for env, overrides in (
        ({"STATE_DIRECTORY": str(state)}, None),
        ({}, {"serve": {"listen": "127.0.0.1:9911", "state_dir": str(state)},
              "output": {"dir": str(state / "runs")}}),
    ):  # fmt: skip
        service = Service(
            load_settings(path, env, overrides=overrides), config_path=path, env=env,
            overrides=overrides,
        )  # fmt: skip
        before = service.settings
        caplog.clear()
        with caplog.at_level(logging.INFO):
            service.reload()
        assert "config reloaded: nothing changed" in caplog.text, caplog.text
        assert service.settings.output.dir == before.output.dir == state / "runs"
        assert service.settings.serve.listen == before.serve.listen


def test_after_a_restart_the_last_session_gauges_show_the_newest_stored_run(tmp_path: Path) -> None:
    def result(run_id: str, sps: float, status: str = "ok") -> dict[str, object]:
        return {"schema_version": 1, "run_id": run_id, "status": status, "problems": [],
                "scenario": "offline", "model": "tiny", "backend": "onnxruntime",
                "window": {"end_unix_ns": 1}, "performance": {"samples_per_second": sps},
                "power": {}, "efficiency": {}}  # fmt: skip

    with Store.open(tmp_path / "store.db") as store:
        store.save_run(result("old", 10.0), {}, None, created_unix_ns=1_000)
        store.save_run(result("new", 20.0), {}, None, created_unix_ns=2_000)
        store.save_run(result("broken", 99.0, "failed"), {}, None, created_unix_ns=3_000)
        telemetry = LiveTelemetry(clock=SessionClock())
        restore_last_sessions(store, telemetry)
    (last,) = telemetry.telemetry().last_sessions
    assert last.samples_per_second == 20.0, f"the gauges show {last} instead of the newest run"


def test_a_stop_is_logged_once_with_what_happens_to_the_jobs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = Service(load_settings(None, {}), env={})
    with caplog.at_level(logging.INFO):
        service.request_stop("SIGTERM")
        service.request_stop("SIGINT")
    lines = [r.message for r in caplog.records if "stopping" in r.message]
    assert lines == ["infergy stopping (SIGTERM): no new jobs; no job is running"], lines
    assert service.stop_requested.is_set()
