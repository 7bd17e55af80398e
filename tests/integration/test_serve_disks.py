"""Full and read-only disks under a real ``infergy serve`` (issue 20, item 3).

Small tmpfs mounts and read-only bind mounts (root only; each test skips, saying why, where
mounting is not allowed): an unusable state directory stops start-up with one line; a write
that fails is logged and named in the result; a result the full store refuses is kept, served,
and stored once there is space; a disk that fills mid-run leaves a ``failed`` result that says
the disk is full, with what was measured; ``/healthz`` measures the store.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from infergy.store.db import Store
from tests.integration.serve_support import QUICK_JOB, ServeProcess, fill, read_only, tmpfs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _store_health(serve: ServeProcess) -> dict[str, Any]:
    return dict(serve.get("/healthz")[1]["components"]["store"])


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def test_a_read_only_state_directory_stops_start_up_with_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with read_only(state):
        serve = ServeProcess(tmp_path, store=state / "infergy.db", output=tmp_path / "out")
        rc = serve.popen().wait(60)
    log = serve.log()
    assert rc == 1, log
    assert "Traceback" not in log, log
    (line,) = [ln for ln in log.splitlines() if ln.startswith("error:")]
    assert f"the store's folder {state} is not writable" in line and "read-only" in line, log


def test_lost_writes_are_logged_and_reported_and_health_is_measured(tmp_path: Path) -> None:
    out = tmp_path / "out"
    serve = ServeProcess(tmp_path, output=out).start()
    try:
        assert _store_health(serve)["state"] == "up"
        run_id = serve.submit(QUICK_JOB)
        traces = out / run_id / "traces"
        with read_only(traces):  # the run's traces/ cannot be written
            done = serve.wait_state(run_id, {"ok", "degraded", "failed"})
        problems = done["result"]["problems"]
        assert any(p.startswith("could not write every file") for p in problems), problems
        assert (out / run_id / "result.json").is_file()  # what could be written, was
        assert "could not write every file" in (out / run_id / "result.json").read_text()
        with read_only(out):  # the results folder itself becomes read-only
            second = serve.submit(QUICK_JOB)
            failed = serve.wait_state(second, {"failed"})
            assert "the run's folder" in failed["error"], failed
            assert "read-only" in failed["error"], failed
    finally:
        rc, _ = serve.stop()
    log = serve.log()
    assert rc == 0, log
    assert f"WARNING infergy.daemon.service: run {run_id}: could not write every file" in log
    assert "internal error" not in log and "Traceback" not in log, log


def test_a_full_store_keeps_the_result_and_stores_it_when_there_is_space(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "state", "4m") as state:
        serve = ServeProcess(tmp_path, store=state / "infergy.db", output=tmp_path / "out").start()
        try:
            run_id = serve.submit(QUICK_JOB | {"duration": 3})
            serve.wait_state(run_id, {"running"})
            filler = fill(state, 0)
            health = {}

            def degraded() -> bool:
                nonlocal health
                health = _store_health(serve)
                return health["state"] == "degraded"

            _wait(degraded, 15, "the store's health to see the full disk")
            assert "full" in health["detail"], health
            done = serve.wait_state(run_id, {"ok", "degraded", "failed"})
            assert done["result"] is not None, done  # served from memory
            assert any("could not be stored" in p for p in done["result"]["problems"]), done
            _wait(lambda: "waiting to be stored" in (_store_health(serve)["detail"] or ""), 15,
                  "the health to name the result kept in memory")  # fmt: skip
            filler.unlink()

            def stored() -> bool:
                with Store.open(serve.store) as store:
                    return store.find_result(run_id) is not None

            _wait(stored, 30, "the kept result to be stored")
            _wait(lambda: _store_health(serve)["state"] == "up", 15, "the store's health")
        finally:
            rc, _ = serve.stop()
            serve.ensure_stopped()
    log = serve.log()
    assert rc == 0, log
    assert f"run {run_id}: its result is stored now" in log, log
    assert "Traceback" not in log, log


def test_a_disk_that_fills_mid_run_leaves_a_failed_result_that_says_so(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "runs", "8m") as out:
        serve = ServeProcess(tmp_path, output=out).start()
        try:
            run_id = serve.submit(QUICK_JOB | {"duration": 30})
            records = out / run_id / "runner" / "queries-run.bin"
            _wait(lambda: records.is_file() and records.stat().st_size > 0, 30, "the run")
            fill(out, 0)
            done = serve.wait_state(run_id, {"failed", "ok", "degraded"}, timeout_s=60)
        finally:
            rc, _ = serve.stop()
            serve.ensure_stopped()
    assert done["state"] == "failed", done
    assert "is full" in done["error"], done
    with Store.open(serve.store) as store:
        kept = store.find_result(run_id)
        assert kept is not None and kept["status"] == "failed", kept
        assert store.get_traces(run_id), "what was measured is kept"
    assert rc == 0, serve.log()
    assert "Traceback" not in serve.log()
