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
import socket
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
    # what stays of the run: no scratch (31 MB of records in a 60-s GPU run), no empty files
    run_dir = tmp_path / "out" / r["run_id"]
    kept = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}
    assert not any(k.startswith("runner/") for k in kept), sorted(kept)
    assert "queries.csv.gz" in kept and "queries.csv" not in kept, sorted(kept)
    assert all((run_dir / k).stat().st_size > 0 for k in kept), sorted(kept)


def test_an_invalid_loadgen_result_is_degraded_and_strict_exits_3(tmp_path: Path) -> None:
    """A Server run LoadGen calls INVALID (a 1-us latency bound no query meets) is never ok."""
    cmd, env = _cli(tmp_path, "--backend", "onnxruntime", "--scenario", "server",
                    "--target-qps", "200", "--target-latency-ms", "0.001", "--duration", "2",
                    "--idle", "0", "--warmup", "1", "--meter", "sim", "--strict", "--json")  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, env=env, text=True, cwd=tmp_path,
                          timeout=120, check=False)  # fmt: skip
    r = json.loads(proc.stdout)
    assert r["loadgen"]["validity"] == "INVALID", r["problems"]
    assert r["loadgen"]["valid"] is False
    assert r["status"] == "degraded", r["problems"]
    invalid_lines = [p for p in r["problems"] if "INVALID" in p]
    assert len(invalid_lines) == 1, invalid_lines  # said once, with LoadGen's reason
    assert "Reduce target QPS" in invalid_lines[0]
    assert proc.returncode == 3, proc.stderr[-2000:]
    with Store.open(tmp_path / "store.db") as store:
        assert [run.status for run in store.list_runs()] == ["degraded"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


def test_an_unreachable_analyzer_fails_fast_before_anything_runs(tmp_path: Path) -> None:
    cmd, env = _cli(tmp_path, "--backend", "onnxruntime", "--duration", "2", "--idle", "1",
                    "--warmup", "1", "--meter", f"ptd://127.0.0.1:{_closed_port()}")  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, env=env, text=True, cwd=tmp_path,
                          timeout=120, check=False)  # fmt: skip
    elapsed_s = time.monotonic() - t0
    err = " ".join(proc.stderr.split())  # the console wraps long lines
    assert proc.returncode == 1, err
    assert "cannot connect to the PTD server at 127.0.0.1:" in err
    assert "Traceback" not in proc.stderr
    assert elapsed_s < 8.0, f"a refused connection took {elapsed_s:.1f} s to report"
    assert "idle baseline" not in proc.stderr + proc.stdout  # reported before the idle phase
    with Store.open(tmp_path / "store.db") as store:
        assert store.list_runs() == []  # nothing ran: nothing stored


def test_a_missing_model_file_is_refused_before_the_meters_open(tmp_path: Path) -> None:
    cmd, env = _cli(tmp_path, "--backend", "onnxruntime", "--model", str(tmp_path / "no.onnx"),
                    "--duration", "2", "--meter", f"ptd://127.0.0.1:{_closed_port()}")  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, env=env, text=True, cwd=tmp_path,
                          timeout=120, check=False)  # fmt: skip
    # the model is checked first: the (unreachable) analyzer is never tried
    err = " ".join(proc.stderr.split())  # the console wraps long lines
    assert proc.returncode == 2, err
    assert "no.onnx' not found" in err
    assert "PTD" not in err


def test_a_server_schedule_too_large_to_hold_is_refused_before_the_idle_phase(
    tmp_path: Path,
) -> None:
    cmd, env = _cli(tmp_path, "--backend", "onnxruntime", "--scenario", "server",
                    "--target-qps", "1000000", "--duration", "600", "--meter", "sim")  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, env=env, text=True, cwd=tmp_path,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "pre-generate" in proc.stderr
    assert "idle baseline" not in proc.stderr + proc.stdout
    assert time.monotonic() - t0 < 8.0


def test_the_summary_says_what_was_measured_in_mlperf_s_words(tmp_path: Path) -> None:
    """An Offline run is one LoadGen query of every sample: not "queries 921,982" and a
    J/query that is per sample. The screen and result.json name the model (not "auto")."""
    cmd, env = _cli(tmp_path, "--backend", "onnxruntime", "--duration", "2", "--idle", "0",
                    "--warmup", "1", "--meter", "sim")  # fmt: skip
    env["COLUMNS"] = "200"
    proc = subprocess.run(cmd, capture_output=True, env=env, text=True, cwd=tmp_path,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    screen = " ".join(proc.stdout.split())
    for words in ("model tiny", "backend onnxruntime", "precision fp32", "batch 1",
                  "devices cpu", "LoadGen VALID", "scenario offline", "queries 1 "):  # fmt: skip
        assert words in screen, (words, screen)
    assert "J/sample" in screen and "per-batch J" in screen
    (result_file,) = (tmp_path / "out").glob("*/result.json")
    r = json.loads(result_file.read_text())
    assert (r["model"], r["precision"], r["batch_size"]) == ("tiny", "fp32", 1)
    perf = r["performance"]
    assert perf["queries"] == 1 and perf["batches"] == perf["samples"] > 100
    eff = r["efficiency"]["sim"]
    assert eff["joules_per_query"] == pytest.approx(r["power"]["sim"]["energy_joules"])
    assert eff["joules_per_sample"] == pytest.approx(eff["joules_per_query"] / perf["samples"])
    assert eff["per_query_joules"] is None and eff["per_batch_joules"]["p50"] > 0
    assert eff["samples_per_joule_mlperf"] is not None  # LoadGen's samples/s over MLPerf's W
    assert r["mlperf"]["scenario"] == "Offline" and r["mlperf"]["validity"] == "VALID"
