"""``infergy measure -- CMD`` end to end: the real CLI, the emulated analyzer behind the bridge.

The emulator plays a constant scripted 200 W (no noise), so every window's true energy is
200 W x its duration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infergy.store.db import Store

pytestmark = pytest.mark.integration

WATTS = 200.0


def _env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "profile.csv").write_text(f"t_s,watts\n0,{WATTS}\n", encoding="utf-8")
    config = tmp_path / "infergy.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "store.db"}"\n[session]\ntail_s = 1.0\n'
        f'[meters]\nrapl = false\n[meters.emulator]\nnoise = 0.0\nprofile = "{tmp_path / "profile.csv"}"\n',
        encoding="utf-8",
    )
    return {**os.environ, "INFERGY_CONFIG": str(config)}


def _measure(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infergy", "measure", *args],
        env=_env(tmp_path), capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _stored(tmp_path: Path) -> list[dict]:
    with Store.open(tmp_path / "store.db") as store:
        return [store.get_result(r.run_id) for r in store.list_runs()]


def test_a_script_marks_its_phases_and_infergy_exits_with_its_code(tmp_path):
    script = (
        'echo "begin load" > "$INFERGY_MARK"; sleep 0.6; '
        'echo "begin load/inner" > "$INFERGY_MARK"; sleep 0.3; echo "end load/inner" > "$INFERGY_MARK"; '
        'echo "end load" > "$INFERGY_MARK"; echo "end load" > "$INFERGY_MARK"; '
        "echo out-of-the-command; sleep 0.2; exit 7"
    )
    done = _measure(tmp_path, "--meter", "sim", "--json", str(tmp_path / "r.json"), "--",
                    "sh", "-c", script)  # fmt: skip
    assert done.returncode == 7, done.stderr
    assert done.stdout == "out-of-the-command\n"  # the command's output, untouched
    (result,) = _stored(tmp_path)
    assert json.loads((tmp_path / "r.json").read_text()) == result
    assert result["schema_version"] == 1 and result["status"] == "ok", result["problems"]
    assert result["scenario"] is None and result["backend"] == "command"
    assert result["command"]["argv"] == ["sh", "-c", script]
    assert result["command"]["exit_code"] == 7 and result["command"]["signal"] is None
    ac = result["power"]["sim"]
    assert ac["simulated"] is True and ac["coverage"] == pytest.approx(1.0)
    duration = result["window"]["duration_s"]
    assert 1.1 < duration < 5
    assert abs(ac["energy_joules"] - WATTS * duration) <= ac["uncertainty_joules"]
    phases = {p["name"]: p for p in result["phases"]}
    assert list(phases) == ["load", "load/inner"]
    assert phases["load"]["duration_s"] == pytest.approx(0.9, abs=0.15)
    assert phases["load/inner"]["duration_s"] == pytest.approx(0.3, abs=0.1)
    for p in phases.values():
        e = p["power"]["sim"]
        assert e["simulated"] is True
        assert abs(e["energy_joules"] - WATTS * p["duration_s"]) <= e["uncertainty_joules"]
    problems = "\n".join(result["problems"])
    assert "window 'load' was already ended" in problems  # the second "end load"
    assert "note: the command exited with 7" in problems
    assert "phase load" in done.stderr and "SIMULATED" in done.stderr
    assert f"run {result['run_id']}" in done.stderr


def test_a_command_that_cannot_start_exits_127_with_one_line_and_stores_nothing(tmp_path):
    (tmp_path / "not-exec.sh").write_text("echo hi\n", encoding="utf-8")
    for argv, why in (
        (["no-such-command-xyz"], "command not found"),
        ([str(tmp_path / "not-exec.sh")], "is not executable"),
        ([str(tmp_path)], "is a directory"),
    ):
        done = _measure(tmp_path, "--", *argv)
        assert done.returncode == 127, (argv, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and why in lines[0] and "Traceback" not in done.stderr, lines
    done = _measure(tmp_path)
    assert done.returncode == 2 and "Missing argument" in done.stderr
    assert not (tmp_path / "store.db").exists() or _stored(tmp_path) == []


def test_a_command_killed_by_a_signal_gives_128_plus_n_and_is_stored(tmp_path):
    done = _measure(tmp_path, "--meter", "sim", "--", "sh", "-c", "kill -TERM $$")
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    (result,) = _stored(tmp_path)
    assert result["command"]["signal"] == "SIGTERM" and result["command"]["exit_code"] is None


def test_ctrl_c_reaches_the_command_and_the_run_is_still_stored(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "infergy", "measure", "--meter", "sim", "--",
         sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)"],
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == "up\n"
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    _out, err = proc.communicate(timeout=30)
    # Python re-raises an uncaught KeyboardInterrupt as SIGINT: 128 + 2, as a shell reports it
    assert proc.returncode == 128 + signal.SIGINT, err
    (result,) = _stored(tmp_path)
    assert result["command"]["signal"] == "SIGINT" and result["status"] == "ok"
    assert "KeyboardInterrupt" in err  # the command's traceback, not infergy's
    assert "Energy of" in err


def test_an_idle_baseline_is_taken_before_the_command(tmp_path):
    done = _measure(tmp_path, "--meter", "sim", "--idle", "1", "--", "sleep", "0.5")
    assert done.returncode == 0, done.stderr
    (result,) = _stored(tmp_path)
    ac = result["power"]["sim"]
    assert ac["idle_watts"] == pytest.approx(WATTS, rel=1e-3)
    idle = result["provenance"]["idle_window"]
    assert idle["end_unix_ns"] <= result["window"]["start_unix_ns"]
    assert (idle["end_unix_ns"] - idle["start_unix_ns"]) / 1e9 == pytest.approx(1.0)
