"""Start-up recovery: every job a previous service lifetime accepted comes back.

The job journal (:mod:`infergy.daemon.journal`) says what was accepted and how far it got:

- a ``queued`` job is queued again, same run id, same place in line;
- a ``running`` job was interrupted (SIGKILL, a crash, a power cut). Its run is rebuilt from
  what is on disk and stored as ``aborted``: the power traces of its last checkpoint, and the
  queries from the runner's record file (flushed every 20 ms, so it holds the queries up to the
  crash, not only up to the checkpoint); ``result.json``, traces and the query log are written
  (``infergy plot RUN_ID`` draws the plots), and the result is published like any other. Its
  problems say what happened and what the data covers.
- a job whose result was stored although the journal still says ``running`` (the crash came
  between the two writes) takes the stored result's status.

Blocking (SQLite, files, the analysis): run :func:`recover` in a worker thread before serving.
"""

from __future__ import annotations

import datetime
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from infergy import __version__
from infergy.config.settings import Settings
from infergy.core.analysis import analyze
from infergy.core.clock import OffsetEstimate
from infergy.core.figures import performance
from infergy.core.inputs import AnalysisOptions, SourceInput, Workload
from infergy.core.trace import NS_PER_S, QueryLog, Scenario, Trace, Window
from infergy.daemon.jobs import JobSpec
from infergy.daemon.maxq_spec import MaxqSpec
from infergy.daemon.scheduler import Job, JobState
from infergy.errors import AnalysisError, InfergyError
from infergy.exporters.files import write_run_files
from infergy.runners.outcome import query_logs
from infergy.runners.recorder import read_records
from infergy.store.db import RUNNING, JobRow, Store

logger = logging.getLogger(__name__)

INTERRUPTED = "the service stopped during this run (killed or crashed)"
"""The first words of an interrupted run's reason (in its problems and its job's error)."""
_CHECKPOINT_NOTE = "checkpoint during the "


@dataclass
class Recovery:
    """What :func:`recover` found: jobs to take back, results to publish."""

    queued: list[Job] = field(default_factory=list)
    finished: list[Job] = field(default_factory=list)
    """Interrupted jobs, now ``aborted`` (or finished as stored), with their results."""
    results: list[dict[str, Any]] = field(default_factory=list)
    """The rebuilt results of interrupted runs (for MQTT and the last-session gauges)."""


def recover(store: Store, settings: Settings, *, now_ns: int) -> Recovery:
    """Take back the journal's unfinished jobs (see the module docstring).

    One job never stops the others: a job that cannot be recovered is logged, marked ``failed``.
    """
    out = Recovery()
    for row in store.job_list():
        try:  # a sweep's id starts mq- (the scheduler's rule)
            model = MaxqSpec if row.run_id.startswith("mq-") else JobSpec
            spec = model.model_validate_json(row.spec_json)
        except ValidationError as err:
            error = f"its job spec is no longer valid: {err.errors()[0]['msg']}"
            logger.error("job %s cannot be taken back: %s", row.run_id, error)
            _put(store, row, "failed", now_ns, error)
            continue
        if row.state == "queued":
            out.queued.append(Job(row.run_id, spec, row.submitted_unix_ns))
            continue
        if isinstance(spec, MaxqSpec):  # its record and GPU settings: maxq_controls at start
            out.finished.append(_interrupted_sweep(store, row, spec, now_ns))
            continue
        try:
            job, result = _recover_running(store, settings, row, spec, now_ns)
        except InfergyError as err:
            error = f"{INTERRUPTED}; it could not be recovered: {err}"
            logger.error("job %s: %s", row.run_id, error)
            _put(store, row, "failed", now_ns, error)
            continue
        out.finished.append(job)
        if result is not None:
            out.results.append(result)
    return out


def _interrupted_sweep(store: Store, row: JobRow, spec: MaxqSpec, now_ns: int) -> Job:
    """A sweep the stop interrupted: ``aborted``; its points so far stay in its record."""
    reason = f"{INTERRUPTED}; its points so far are kept in its record"
    _put(store, row, "aborted", now_ns, reason)
    job = Job(row.run_id, spec, row.submitted_unix_ns, started_unix_ns=row.started_unix_ns,
              finished_unix_ns=now_ns)  # fmt: skip
    job.state, job.error = JobState.ABORTED, reason
    logger.warning("sweep %s was interrupted by a previous stop: aborted", row.run_id)
    return job


def _put(store: Store, row: JobRow, state: str, now_ns: int, error: str | None) -> None:
    done = JobRow(row.run_id, row.submitted_unix_ns, state, row.spec_json, row.started_unix_ns,
                  now_ns, error, row.clock_offset_ns)  # fmt: skip
    store.job_put([done])


def _recover_running(
    store: Store, settings: Settings, row: JobRow, spec: JobSpec, now_ns: int
) -> tuple[Job, dict[str, Any] | None]:
    job = Job(row.run_id, spec, row.submitted_unix_ns, started_unix_ns=row.started_unix_ns,
              finished_unix_ns=now_ns)  # fmt: skip
    stored = store.find_result(row.run_id)
    if stored is not None and stored.get("status") != RUNNING:  # it finished; the journal lagged
        state = stored.get("status")
        job.state = JobState(state) if state in set(JobState) else JobState.FAILED
        job.result = stored
        _put(store, row, job.state.value, now_ns, None)
        return job, None
    result, traces, queries = rebuild(store, settings, row, spec, stored)
    reason = result["problems"][-1]
    out_dir = settings.output.dir
    try:
        write_run_files(out_dir, result, traces, queries)
    except InfergyError as err:
        result["problems"].insert(-1, f"could not write every file: {err}")
        logger.warning("run %s: could not write every file: %s", row.run_id, err)
    store.save_run(result, traces, queries)
    _put(store, row, "aborted", now_ns, reason)
    job.state, job.result, job.error = JobState.ABORTED, result, reason
    logger.warning("run %s was interrupted by a previous stop: stored as aborted (%s)",
                   row.run_id, reason.removeprefix(INTERRUPTED + ": "))  # fmt: skip
    return job, result


def rebuild(
    store: Store,
    settings: Settings,
    row: JobRow,
    spec: JobSpec,
    checkpoint: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Trace], QueryLog | None]:
    """The ``aborted`` result of an interrupted run from its checkpoint and its record file."""
    run_id = row.run_id
    traces: dict[str, Trace] = {}
    kept: QueryLog | None = None
    if checkpoint is not None:
        traces = store.get_traces(run_id)
        kept = store.get_queries(run_id)
    queries, from_file = kept, False
    records = settings.output.dir / run_id / "runner" / "queries-run.bin"
    if row.clock_offset_ns is not None and records.is_file():
        offset = np.int64(row.clock_offset_ns)
        on_disk = query_logs(read_records(records), lambda t: t + offset, ["all"])[0]
        if len(on_disk) >= (0 if kept is None else len(kept)):
            queries, from_file = on_disk, True
    reason = f"{INTERRUPTED}: {_coverage(traces, kept, queries, from_file)}"
    problems = [p for p in (checkpoint or {}).get("problems", []) if isinstance(p, str)]
    problems = [p for p in problems if not p.startswith(_CHECKPOINT_NOTE)]
    identity = _identity(row, spec, checkpoint)
    scenario = Scenario.parse(spec.scenario)
    result: dict[str, Any] | None = None
    if traces and queries is not None and len(queries):
        try:
            workload = Workload.of_queries(scenario, queries)
            result = _analysis(settings, identity, workload, traces, problems)
        except AnalysisError as err:
            problems.append(f"no analysis of the recovered run: {err}")
    if result is None:
        result = _bare(identity, scenario, queries, problems, checkpoint)
    result["status"] = "aborted"
    result["problems"].append(reason)
    return result, traces, queries


def _coverage(
    traces: dict[str, Trace], kept: QueryLog | None, queries: QueryLog | None, from_file: bool
) -> str:
    """What the recovered data covers, in words."""
    n = 0 if queries is None else len(queries)
    if not traces:
        power = "no checkpoint was taken, so no power was kept"
    else:
        end_ns = max(int(t.t_ns[-1]) for t in traces.values() if len(t))
        stamp = datetime.datetime.fromtimestamp(end_ns / NS_PER_S, datetime.UTC)
        power = f"power is kept up to its last checkpoint ({stamp:%H:%M:%S} UTC)"
    if from_file:
        had = 0 if kept is None else len(kept)
        return f"{power}; {n:,} queries come from the runner's record file ({had:,} checkpointed)"
    return f"{power}; {n:,} queries were checkpointed (no record file was found)"


def _identity(row: JobRow, spec: JobSpec, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    if checkpoint is not None:
        keys = ("run_id", "backend", "model", "precision", "batch_size", "devices", "host")
        identity = {k: checkpoint.get(k) for k in keys}
        identity["provenance"] = dict(checkpoint.get("provenance") or {})
        return identity
    return {
        "run_id": row.run_id,
        "backend": spec.backend,
        "model": spec.model,
        "precision": spec.precision,
        "batch_size": spec.batch_size,
        "devices": None,
        "host": socket.gethostname(),
        "provenance": {
            "infergy_version": __version__,
            "command": "serve",
            "job": spec.model_dump(mode="json"),
        },
    }


def _analysis(
    settings: Settings,
    identity: dict[str, Any],
    workload: Workload,
    traces: dict[str, Trace],
    problems: list[str],
) -> dict[str, Any]:
    meters = identity["provenance"].get("meters") or {}
    sources = []
    for name, trace in sorted(traces.items()):
        found = meters.get(name)
        entry: dict[str, Any] = found if isinstance(found, dict) else {}
        period_ms = entry.get("nominal_period_ms")
        offset = None
        if entry.get("clock_offset_ms") is not None:  # stored traces have it applied
            u_ns = round(float(entry.get("clock_offset_uncertainty_ms") or 0.0) * 1e6)
            offset = OffsetEstimate(0, u_ns, "bracketing", True)
        sources.append(
            SourceInput(
                name=name,
                kind=str(entry.get("kind") or "replay"),
                trace=trace,
                offset=offset,
                update_period_ns=None if period_ms is None else round(float(period_ms) * 1e6),
            )
        )
    idle = identity["provenance"].get("idle_window")
    a = settings.analysis
    options = AnalysisOptions(
        gap_factor=a.gap_factor,
        degraded_coverage=a.degraded_coverage,
        align_max_lag_s=a.align_max_lag_s,
        idle_window=None if not idle else Window(idle["start_unix_ns"], idle["end_unix_ns"]),
    )
    assert workload.queries is not None
    result = analyze(
        sources,
        workload,
        Window.of_queries(workload.queries),
        identity=identity,
        options=options,
        problems=problems,
    ).result
    for name, entry in meters.items():
        if name in result["power"] and isinstance(entry, dict) and entry.get("simulated"):
            result["power"][name]["simulated"] = True
    return result


def _bare(
    identity: dict[str, Any],
    scenario: Scenario,
    queries: QueryLog | None,
    problems: list[str],
    checkpoint: dict[str, Any] | None,
) -> dict[str, Any]:
    """A result without power figures: the queries' performance, if any were recorded."""
    if queries is not None and len(queries):
        window = Window.of_queries(queries)
        perf = performance(Workload.of_queries(scenario, queries), window)
        span = {"start_unix_ns": window.start_ns, "end_unix_ns": window.end_ns,
                "duration_s": window.duration_s}  # fmt: skip
    else:
        perf = {"queries": 0, "samples": None, "samples_per_second": None, "latency_ms": None}
        span = (checkpoint or {}).get("window") or {
            "start_unix_ns": None, "end_unix_ns": None, "duration_s": None,
        }  # fmt: skip
    return {
        "schema_version": 1,
        "run_id": identity["run_id"],
        "status": "aborted",
        "problems": problems,
        "scenario": scenario.value,
        **{k: identity[k] for k in ("backend", "model", "precision", "batch_size", "devices")},
        "host": identity["host"],
        "window": span,
        "performance": perf,
        "power": {},
        "efficiency": {},
        "provenance": identity["provenance"],
    }


__all__ = ["INTERRUPTED", "Recovery", "rebuild", "recover"]
