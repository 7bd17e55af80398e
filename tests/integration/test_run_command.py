"""``infergy run`` with the real runner (ONNX Runtime, real LoadGen) and the emulated analyzer.

Issue 6's CI acceptance: a 20-s CPU session against the emulated analyzer scripted to a known
power profile (energy within 0.5 %, coverage 1.0), and SIGINT during the measured run (an
``aborted`` result stored with its partial traces, exit code 1).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infergy.daemon.session import Session
from infergy.store.db import Store
from tests.integration.test_session import _settings, _spec, _truth_j

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _cli(tmp_path: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    """``infergy run`` with a config of its own under ``tmp_path`` (store, output, no RAPL)."""
    config = tmp_path / "infergy.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "store.db"}"\n[output]\ndir = "{tmp_path / "out"}"\n'
        "[meters]\nrapl = false\n",
        encoding="utf-8",
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return [sys.executable, "-m", "infergy", "run", "--config", str(config), *args], env


def test_a_20_s_cpu_session_matches_the_scripted_profile(tmp_path: Path) -> None:
    profile = "t_s,watts\n0,95\n5,95\n9,210\n14,210\n18,150\n120,150\n"
    settings = _settings(tmp_path, profile)
    spec = _spec(scenario="single-stream", duration=20.0, idle=2.0, warmup=2.0)
    session = Session("cpu20", spec, settings)  # the real runner: onnxruntime "tiny" + LoadGen
    outcome = asyncio.run(session.run())
    r = outcome.result
    assert r["status"] == "ok", r["problems"]
    assert r["window"]["duration_s"] >= 20.0
    assert r["loadgen"]["validity"] == "VALID"
    sim = r["power"]["sim"]
    assert sim["coverage"] == pytest.approx(1.0)
    assert sim["energy_joules"] == pytest.approx(_truth_j(session, r), rel=5e-3)
    assert r["performance"]["queries"] > 1000
    assert r["provenance"]["software"]["workload"]["backend"] == "onnxruntime"


def test_sigint_during_the_measured_run_stores_an_aborted_run(tmp_path: Path) -> None:
    cmd, env = _cli(tmp_path, "--backend", "onnxruntime", "--scenario", "single-stream",
                    "--duration", "20", "--idle", "1", "--warmup", "1", "--meter", "sim")  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True, cwd=tmp_path)  # fmt: skip
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        seen.append(line)
        if "measured run" in line or time.monotonic() > deadline:
            break
    # LoadGen first generates its schedule (seconds on a slow machine), then issues: wait until
    # the runner has recorded a few hundred measured queries (32-byte records, flushed often)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        records = list((tmp_path / "out").glob("*/runner/queries-run.bin"))
        if records and records[0].stat().st_size >= 300 * 32:
            break
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    text = "".join(seen) + out
    assert proc.returncode == 1, text
    assert "Traceback" not in text
    assert "aborted" in text
    with Store.open(tmp_path / "store.db") as store:
        runs = store.list_runs()
        assert [r.status for r in runs] == ["aborted"]
        result = store.get_result(runs[0].run_id)
        traces = store.get_traces(runs[0].run_id)
        queries = store.get_queries(runs[0].run_id)
    assert len(traces["sim"]) > 8
    assert queries is not None and len(queries) > 100, text
    assert not any("could not stop the analyzer" in p for p in result["problems"])
    assert json.dumps(result)


def test_runner_tuning_flags_reach_the_runner(tmp_path: Path) -> None:
    """--workers/--seed/--batching-timeout-ms travel flag -> JobSpec -> runner child, recorded."""
    cmd, env = _cli(tmp_path, "--backend", "onnxruntime", "--scenario", "server",
                    "--target-qps", "200", "--batch-size", "4", "--duration", "2", "--idle", "0",
                    "--warmup", "1", "--meter", "sim", "--workers", "2", "--seed", "7",
                    "--batching-timeout-ms", "0.5", "--json")  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, env=env, text=True, cwd=tmp_path,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout)
    job = r["provenance"]["job"]
    assert (job["workers"], job["seed"], job["batching_timeout_ms"]) == (2, 7, 0.5)
    assert r["provenance"]["software"]["workload"]["workers_per_device"] == 2
    assert r["loadgen"]["requested"]["qsl_rng_seed"] == 7
