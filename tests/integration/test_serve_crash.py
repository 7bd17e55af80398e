"""Nothing accepted is ever lost (issue 20, items 1 and 2): SIGKILL and SIGTERM of a real
``infergy serve``.

SIGKILL mid-run: the next start takes back every job it had accepted (the queued one runs,
the running one is ``aborted`` with every query its runner recorded, not only those of its
last checkpoint, and a ``result.json``). SIGTERM with a short ``stop_timeout_s``: the running
job is aborted with the reason in its result, that result reaches the broker before the
process exits, the queued job is kept for the next start, and an idle service exits at once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from infergy.runners.recorder import read_records
from infergy.store.db import Store
from tests.integration.mosquitto import running_broker
from tests.integration.mqtt_support import Collector, background, until
from tests.integration.serve_support import QUICK_JOB, ServeProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LONG_JOB = QUICK_JOB | {"duration": 60}
IDLE_STOP_S = 2.0


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def _checkpointed_queries(store_path: Path, run_id: str) -> int:
    with Store.open(store_path) as store:
        result = store.find_result(run_id)
        if result is None or result["status"] != "running":
            return 0
        queries = store.get_queries(run_id)
        return 0 if queries is None else len(queries)


def _records(path: Path) -> int:
    return len(read_records(path))


def test_sigkill_mid_run_loses_no_job_and_no_recorded_query(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path).start()
    try:
        long = serve.submit(LONG_JOB)
        queued = serve.submit(QUICK_JOB)  # waits behind the long job (both claim every GPU)
        records = serve.output / long / "runner" / "queries-run.bin"
        _wait(lambda: _checkpointed_queries(serve.store, long) > 0, 45, "a checkpoint mid-run")
        checkpointed = _checkpointed_queries(serve.store, long)
        time.sleep(2.0)  # queries after the checkpoint: only the runner's record file has them
        serve.kill()
    finally:
        serve.ensure_stopped()
    sizes = [-1]  # the orphaned LoadGen process sees its stdin close and exits

    def settled() -> bool:
        sizes.append(_records(records))
        time.sleep(0.3)
        return sizes[-1] == sizes[-2]

    _wait(settled, 10, "the runner's record file to settle")
    on_disk = _records(records)
    assert on_disk > checkpointed > 0, (on_disk, checkpointed)

    serve = ServeProcess(tmp_path).start()
    try:
        status, body = serve.get(f"/v1/runs/{long}")
        assert status == 200, body
        assert body["state"] == "aborted", body
        assert "stopped during this run" in body["error"], body
        result = body["result"]
        assert result["status"] == "aborted"
        assert result["performance"]["queries"] == on_disk, (result["performance"], on_disk)
        assert any("record file" in p and "checkpoint" in p for p in result["problems"]), result
        assert result["power"], "the checkpointed power traces are analysed"
        written = json.loads((serve.output / long / "result.json").read_text(encoding="utf-8"))
        assert written["status"] == "aborted"
        assert written["performance"]["queries"] == on_disk
        assert (serve.output / long / "queries.csv.gz").is_file()
        done = serve.wait_state(queued, {"ok", "degraded"}, timeout_s=90)  # the queue came back
        assert done["result"]["run_id"] == queued
    finally:
        rc, _ = serve.stop()
    assert rc == 0, serve.log()
    assert "Traceback" not in serve.log()


def test_sigkill_before_the_first_checkpoint_still_leaves_the_job_answered(
    tmp_path: Path,
) -> None:
    serve = ServeProcess(tmp_path).start()
    try:
        run_id = serve.submit(LONG_JOB)
        serve.wait_state(run_id, {"running"})
        time.sleep(1.0)  # the case: killed seconds after the 202, nothing checkpointed
        serve.kill()
    finally:
        serve.ensure_stopped()
    with Store.open(serve.store) as store:
        assert store.find_result(run_id) is None  # only the job journal knew of it
    serve = ServeProcess(tmp_path).start()
    try:
        status, body = serve.get(f"/v1/runs/{run_id}")
        listed = [r["run_id"] for r in serve.get("/v1/runs")[1]["runs"]]
    finally:
        rc, _ = serve.stop()
    assert status == 200, body  # not 404
    assert body["state"] == "aborted" and "no checkpoint was taken" in body["error"], body
    assert body["result"]["status"] == "aborted", body
    assert run_id in listed
    assert rc == 0 and "Traceback" not in serve.log(), serve.log()


def test_sigterm_aborts_with_its_reason_delivers_it_and_keeps_the_queue(tmp_path: Path) -> None:
    async def scenario(broker_port: int) -> tuple[ServeProcess, str, str, Collector, float]:
        collector = Collector(broker_port, topic="infergy/t1/#")
        async with background(collector.run()):
            await until(collector.connected.is_set, 10, "the subscriber")
            serve = ServeProcess(tmp_path, mqtt_port=broker_port, stop_timeout_s=2)
            await asyncio.to_thread(serve.start)
            long = await asyncio.to_thread(serve.submit, LONG_JOB)
            queued = await asyncio.to_thread(serve.submit, QUICK_JOB)
            await asyncio.to_thread(serve.wait_state, long, {"running"})
            runner = serve.output / long / "runner" / "queries-run.bin"
            await until(lambda: runner.is_file() and runner.stat().st_size > 0, 30, "the run")
            rc, took_s = await asyncio.to_thread(serve.stop, signal.SIGTERM)
            assert rc == 0, serve.log()
            await asyncio.sleep(0.3)  # what the broker took is forwarded at once
        return serve, long, queued, collector, took_s

    with running_broker(tmp_path / "mqtt") as broker:
        serve, long, queued, collector, took_s = asyncio.run(scenario(broker.port))
    log = serve.log()
    assert "Traceback" not in log, log
    # stop_timeout_s = 2 to finish, then the abort and the flush: a few seconds, not more
    assert took_s < 2 + 10, (took_s, log)
    runs = [json.loads(p) for t, p, _ in collector.messages if t == "infergy/t1/runs"]
    aborted = [r for r in runs if r["run_id"] == long]
    assert aborted, f"the aborted result never reached the broker: {log}"
    problems = " ".join(aborted[0]["problems"])
    assert aborted[0]["status"] == "aborted"
    assert "the service was stopping" in problems and "stop_timeout_s = 2 s" in problems, problems
    assert "cancelled on request" not in log, log
    assert "queued job(s) kept" in log and "aborting it" in log, log
    with Store.open(serve.store) as store:
        assert store.outbox_count() == 0, "the stop left results in the outbox"
        kept = store.job_get(queued)
        assert kept is not None and kept.state == "queued", kept  # it runs after the next start
        assert store.job_get(long).state == "aborted"  # type: ignore[union-attr]


def test_an_idle_service_stops_at_once(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path).start()
    _wait(lambda: serve.get("/healthz")[1]["components"]["meters"]["state"] != "down", 10, "meters")
    rc, took_s = serve.stop(signal.SIGTERM)
    assert rc == 0, serve.log()
    assert took_s < IDLE_STOP_S, (took_s, serve.log())
