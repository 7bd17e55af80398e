"""``infergy maxq`` in a real subprocess: SIGTERM mid-point, ``kill -9`` mid-sweep, restart.

The simulated board's settings persist in the state dir as a real GPU's persist in the
driver, so a killed sweep really leaves it changed: the test reads the board's settings file
to see the change, and sees the next start (``infergy maxq restore``, or the next sweep) put
it back.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from infergy.store.db import Store
from tests.integration.maxq_support import board_settings, cli, cli_env, journal_exists, toml

pytestmark = pytest.mark.integration

SWEEP = ("maxq", "--power-limits", "300,500,700", "--batch-sizes", "256", "--search", "grid")


def _start(config: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli(*SWEEP, "--config", str(config), "--meter", "nvml", *extra),
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_changed(tmp: Path, proc: subprocess.Popen[str], timeout_s: float = 90.0) -> None:
    """Until the board runs a point's (non-default) power limit."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        settings = board_settings(tmp)
        if settings is not None and settings["power_limit_w"] != 700.0:
            return
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the sweep never changed the power limit")


def _record(tmp: Path) -> dict:
    with Store.open(tmp / "store.db") as store:
        records = store.list_sweeps(10)
    return next(r for r in records if not r["sweep_id"].endswith("-auto"))


def test_sigterm_mid_point_restores_keeps_the_points_and_exits_1(tmp_path: Path) -> None:
    config = toml(tmp_path, settle_s=0.3, point_duration_s=4.0)
    proc = _start(config)
    _wait_changed(tmp_path, proc)
    time.sleep(0.3 + 0.3 + 1.5)  # past the settle and warm-up: inside the measured run
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (out, err)
    assert "interrupted" in out and "settings restored and verified" in out
    assert "Traceback" not in out + err
    assert board_settings(tmp_path)["power_limit_w"] == 700.0  # type: ignore[index]
    assert not journal_exists(tmp_path)
    record = _record(tmp_path)
    assert record["status"] == "aborted" and record["restore"]["verified"] is True
    roles = [(p["role"], p["status"]) for p in record["points"]]
    assert roles == [("baseline-start", "ok"), ("point", "aborted")]  # the baseline is kept
    with Store.open(tmp_path / "store.db") as store:
        assert store.get_result(record["points"][1]["run_id"])["status"] == "aborted"


def test_kill_9_mid_sweep_leaves_the_journal_and_the_next_start_restores_it(
    tmp_path: Path,
) -> None:
    config = toml(tmp_path, settle_s=0.3, point_duration_s=3.0)
    proc = _start(config)
    _wait_changed(tmp_path, proc)
    proc.kill()  # SIGKILL: no finally runs
    proc.communicate(timeout=30)
    assert journal_exists(tmp_path)
    assert board_settings(tmp_path)["power_limit_w"] == 300.0  # type: ignore[index]
    journal = json.loads((tmp_path / "state" / "maxq-restore.json").read_text())
    assert journal["gpus"][0]["power_limit_w"] == 700.0  # the original, written before
    done = subprocess.run(
        cli("maxq", "restore", "--config", str(config)), env=cli_env(), capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"restored the settings sweep {journal['sweep_id']} left changed" in done.stdout
    assert board_settings(tmp_path)["power_limit_w"] == 700.0  # type: ignore[index]
    assert not journal_exists(tmp_path)
    again = subprocess.run(
        cli("maxq", "restore", "--config", str(config)), env=cli_env(), capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode == 0 and "nothing to restore" in again.stdout
    # killed again; this time the next sweep's start restores (and marks the dead one aborted)
    proc = _start(config)
    _wait_changed(tmp_path, proc)
    proc.kill()
    proc.communicate(timeout=30)
    assert journal_exists(tmp_path)
    nxt = subprocess.run(
        cli("maxq", "--config", str(config), "--batch-sizes", "256", "--meter", "nvml",
            "--backend", "sim", "--json"),
        env=cli_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert nxt.returncode == 0, nxt.stderr
    assert "was interrupted: marked aborted" in nxt.stderr
    assert "restored the settings sweep" in nxt.stderr
    assert board_settings(tmp_path)["power_limit_w"] == 700.0  # type: ignore[index]
    assert not journal_exists(tmp_path)
    with Store.open(tmp_path / "store.db") as store:
        statuses = sorted(r["status"] for r in store.list_sweeps(10))
    assert statuses == ["aborted", "aborted", "ok"]
