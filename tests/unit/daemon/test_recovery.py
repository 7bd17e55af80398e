"""Start-up recovery over a real store file: every journalled job comes back, and an
interrupted run is rebuilt from its checkpoint and its runner's record file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infergy.config.settings import Settings, load_settings
from infergy.core.trace import QueryLog, Semantics, Trace
from infergy.daemon.jobs import JobSpec
from infergy.daemon.journal import job_row
from infergy.daemon.recovery import INTERRUPTED, recover
from infergy.daemon.scheduler import Job, JobState
from infergy.store.db import JobRow, Store

S = 1_000_000_000
OFFSET_NS = 1_700_000_000 * S  # the dead service's clock: wall = monotonic + this
SPEC = JobSpec(backend="onnxruntime", scenario="single-stream", duration=30)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(None, {}, overrides={"output": {"dir": str(tmp_path / "out")}})


def _running(run_id: str, store: Store) -> None:
    job = Job(run_id, SPEC, 1, state=JobState.RUNNING, started_unix_ns=2)
    store.job_put([job_row(job, clock_offset_ns=OFFSET_NS)])


def _records(settings: Settings, run_id: str, n: int) -> None:
    """A runner's record file: n queries, 1 ms apart, 0.5 ms each, on the monotonic clock."""
    issue = 10 * S + np.arange(n, dtype=np.int64) * 1_000_000
    rows = np.stack([issue, issue + 500_000, np.ones(n, np.int64), np.zeros(n, np.int64)], 1)
    path = settings.output.dir / run_id / "runner" / "queries-run.bin"
    path.parent.mkdir(parents=True)
    path.write_bytes(rows.astype("<i8").tobytes() + b"\x01\x02")  # and a torn last record


def test_queued_jobs_come_back_in_order(tmp_path: Path, settings: Settings) -> None:
    with Store.open(tmp_path / "s.db") as store:
        store.job_put([job_row(Job(f"q{i}", SPEC, 10 - i)) for i in range(3)])
        found = recover(store, settings, now_ns=99)
    assert [j.run_id for j in found.queued] == ["q2", "q1", "q0"]  # by submission time
    assert all(j.state is JobState.QUEUED for j in found.queued)


def test_a_run_killed_before_its_first_checkpoint_is_stored_from_its_records(
    tmp_path: Path, settings: Settings
) -> None:
    with Store.open(tmp_path / "s.db") as store:
        _running("r1", store)
        _records(settings, "r1", 2000)
        found = recover(store, settings, now_ns=99)
        (job,) = found.finished
        stored = store.get_result("r1")
        row = store.job_get("r1")
    assert job.state is JobState.ABORTED and job.error is not None
    assert job.error.startswith(INTERRUPTED) and "no checkpoint was taken" in job.error
    assert stored["status"] == "aborted" and stored["performance"]["queries"] == 2000
    window = stored["window"]
    assert window["start_unix_ns"] == OFFSET_NS + 10 * S  # placed on the dead service's clock
    assert row is not None and (row.state, row.error) == ("aborted", job.error)
    assert (settings.output.dir / "r1" / "result.json").is_file()
    assert found.results == [stored]


def test_a_checkpointed_run_keeps_its_power_and_gets_every_recorded_query(
    tmp_path: Path, settings: Settings
) -> None:
    with Store.open(tmp_path / "s.db") as store:
        _running("r2", store)
        t = OFFSET_NS + 9 * S + np.arange(200, dtype=np.int64) * 20_000_000  # 4 s at 50 Hz
        trace = Trace(t, np.full(200, 100.0), Semantics.INSTANT, 20_000_000)
        issue = OFFSET_NS + 10 * S + np.arange(500, dtype=np.int64) * 1_000_000
        checkpoint = {
            "schema_version": 1, "run_id": "r2", "status": "running",
            "problems": ["checkpoint during the run phase"], "scenario": "single-stream",
            "backend": "onnxruntime", "model": "tiny", "precision": "fp32", "batch_size": 1,
            "devices": ["cpu"], "host": "h", "provenance": {"meters": {"sim": {
                "kind": "sim", "simulated": True, "nominal_period_ms": 20.0}}},
        }  # fmt: skip
        store.checkpoint_run(checkpoint, {"sim": trace}, QueryLog(issue, issue + 500_000,
                                                                  np.ones(500, np.int64)))  # fmt: skip
        _records(settings, "r2", 2000)
        recover(store, settings, now_ns=99)
        stored = store.get_result("r2")
        queries = store.get_queries("r2")
    assert stored["status"] == "aborted"
    assert queries is not None and len(queries) == 2000  # not the 500 checkpointed
    assert stored["power"]["sim"]["energy_joules"] is not None
    assert stored["power"]["sim"]["simulated"] is True
    assert not any(p.startswith("checkpoint during") for p in stored["problems"])
    assert (
        "2,000 queries come from the runner's record file (500 checkpointed)"
        in (stored["problems"][-1])
    )


def test_a_run_whose_result_was_stored_keeps_it(tmp_path: Path, settings: Settings) -> None:
    with Store.open(tmp_path / "s.db") as store:
        _running("r3", store)
        store.save_run({"run_id": "r3", "status": "ok", "problems": []}, {}, None)
        (job,) = recover(store, settings, now_ns=99).finished
        assert store.job_get("r3").state == "ok"  # type: ignore[union-attr]
    assert job.state is JobState.OK and job.result is not None


def test_a_spec_that_no_longer_validates_fails_its_job(tmp_path: Path, settings: Settings) -> None:
    with Store.open(tmp_path / "s.db") as store:
        store.job_put([JobRow("bad", 1, "queued", '{"scenario": "sideways"}')])
        found = recover(store, settings, now_ns=99)
        row = store.job_get("bad")
    assert found.queued == [] and found.finished == []
    assert row is not None and row.state == "failed" and "no longer valid" in (row.error or "")
