"""The job queue of ``infergy serve``: sessions one at a time per GPU set, in submission order.

A :class:`JobScheduler` accepts :class:`~infergy.daemon.jobs.JobSpec` submissions, keeps them in
a bounded queue, and runs each through an injected ``run_session(run_id, spec)`` coroutine (the
measurement session). Jobs whose claims overlap (:func:`claims`) never run at the same time;
jobs with disjoint claims run in parallel. The service owns the tasks::

    scheduler = JobScheduler(run_session, max_queued=16)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(scheduler.run(), name="infergy-scheduler")
        run_id = await scheduler.accept(JobSpec(scenario="single-stream", duration=10))
        ...
        await scheduler.drain(timeout_s=30)  # on SIGTERM: run() returns once it is done

Job states: ``queued`` -> ``running`` -> ``ok | degraded | failed | aborted``, or
``queued`` -> ``cancelled``. A cancelled running job's session task is cancelled and the job
ends ``aborted``. Finished jobs stay listed (the newest ``history`` of them); the store keeps
their results for good. With a ``persist`` hook (the service's job journal), :meth:`accept`
makes a job durable before it is queued, and a stop keeps the queue for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from infergy.daemon.jobs import JobSpec
from infergy.daemon.maxq_spec import MaxqSpec
from infergy.errors import InfergyError, JobConflictError, QueueFullError, UnknownRunError
from infergy.store.names import new_run_id

logger = logging.getLogger(__name__)

Spec = JobSpec | MaxqSpec
"""What a job runs: a measurement session, or a MaxQ sweep (its id starts ``mq-``)."""
RunSession = Callable[[str, Spec], Awaitable[dict[str, Any]]]
"""``run_session(run_id, spec) -> result``: one measurement session (or sweep), returning the
result JSON object (ARCHITECTURE.md, "Result"; a sweep's record, docs/maxq.md); raises
``InfergyError`` when it fails."""
Persist = Callable[["Job"], Awaitable[None]]
"""``persist(job)``: make a new job durable before it is accepted (raises ``InfergyError``)."""
CANCELLED_ON_REQUEST = "cancelled on request"
_WHY_IT_ENDED = ("failed during the ", "aborted during the ", "the service stopped during")

CANCELLED_ON_REQUEST = "cancelled on request"
"""Why a job a client cancelled (DELETE /v1/runs/<id>, MQTT cmd/cancel) was aborted."""
HOST = "host"
"""The claim on the box-wide resources: the CPU, RAPL and the wall-power analyzer."""
_PER_DEVICE_METERS = frozenset({"nvml", "sim"})


class JobState(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"
    ABORTED = "aborted"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the job has reached a final state."""
        return self not in (JobState.QUEUED, JobState.RUNNING)


def claims(spec: Spec) -> frozenset[str] | None:
    """The resources a job holds while it runs; ``None`` means every resource.

    The overlap rule (two jobs may run together only if their claims are disjoint):

    - ``gpus=None`` (all visible GPUs) claims everything: it overlaps every other job.
    - ``gpus=()`` (CPU-only) claims ``host``: the CPU is the device under test.
    - ``gpus=(0, 2)`` claims ``gpu0`` and ``gpu2``, plus ``host`` unless every meter is
      per-device (``nvml``, ``sim``). Wall power (an analyzer) and CPU package power (RAPL)
      measure the whole box, so two sessions using them at once would each count the
      other's energy; an automatic meter choice (``meter=()``) may pick them, so it claims
      ``host`` too.
    - a MaxQ sweep claims everything: it changes GPU settings and measures idle baselines.
    """
    if isinstance(spec, MaxqSpec) or spec.gpus is None:
        return None
    held = {f"gpu{i}" for i in spec.gpus}
    if not spec.gpus or not spec.meter or not set(spec.meter) <= _PER_DEVICE_METERS:
        held.add(HOST)
    return frozenset(held)


def overlaps(a: Spec, b: Spec) -> bool:
    """Whether two jobs may not run at the same time (see :func:`claims`)."""
    ca, cb = claims(a), claims(b)
    return ca is None or cb is None or not ca.isdisjoint(cb)


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The headline of a result object: status, problems, throughput and efficiency per source.

    A sweep record's headline is its status, problems and the recommendation's summary line.
    """
    if result.get("kind") == "infergy-maxq-sweep":
        rec = result.get("recommendation")
        return {
            "status": result.get("status"),
            "problems": list(result.get("problems") or []),
            "recommendation": rec.get("summary") if isinstance(rec, dict) else None,
            "simulated": bool(result.get("simulated")),
        }
    performance = result.get("performance") or {}
    efficiency = result.get("efficiency") or {}
    return {
        "status": result.get("status"),
        "problems": list(result.get("problems") or []),
        "scenario": result.get("scenario"),
        "loadgen_validity": (result.get("loadgen") or {}).get("validity"),
        "samples_per_second": performance.get("samples_per_second"),
        "efficiency": {
            str(source): {
                "samples_per_second_per_watt": figures.get("samples_per_second_per_watt"),
                "joules_per_query": figures.get("joules_per_query"),
                "joules_per_sample": figures.get("joules_per_sample"),
            }
            for source, figures in efficiency.items()
            if isinstance(figures, dict)
        },
    }


@dataclass(eq=False)
class Job:
    """One submitted job and what became of it (times: Unix ns)."""

    run_id: str
    spec: Spec
    submitted_unix_ns: int
    state: JobState = JobState.QUEUED
    started_unix_ns: int | None = None
    finished_unix_ns: int | None = None
    result: dict[str, Any] | None = None
    """The full result object once the session returned one."""
    error: str | None = None
    """Why the job failed, was aborted or cancelled (one line)."""
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    cancel_requested: bool = False
    abort_reason: str | None = None
    """Why a running job is being aborted (a DELETE, the service stopping), for its result."""

    @property
    def summary(self) -> dict[str, Any] | None:
        """The result's headline (:func:`summarize`), once there is a result."""
        return None if self.result is None else summarize(self.result)


class JobScheduler:
    """A bounded FIFO of measurement jobs, run by ``run()`` with the overlap rule of :func:`claims`.

    A queued job starts when it overlaps neither a running job nor a job queued before it, so
    a job waiting for all GPUs is never overtaken on the GPUs it waits for (no starvation).

    Args:
        run_session: the session coroutine (the service injects the real one).
        max_queued: most jobs waiting at once; ``submit`` raises ``QueueFullError`` beyond it.
        history: how many finished jobs stay listed in memory.
        clock_ns: wall clock for the job timestamps (tests inject one).
        new_id: run id factory (``infergy.store.names.new_run_id``).
        on_change: called with the job after each state change (queued, running, final),
            e.g. to update metrics; its exceptions are logged, never raised.
        persist: awaited with each job :meth:`accept` takes, before it is queued (the service
            journals it in the store, so an accepted job survives a crash).
        check: called with each new job's spec before it is accepted; it raises a
            ``JobError`` for what this service cannot run (the HTTP API answers 422, MQTT an
            error reply), so such a job is refused, never accepted and failed later.

    Not thread-safe: call ``submit``, ``cancel`` and the queries from the event loop.
    """

    def __init__(
        self,
        run_session: RunSession,
        *,
        max_queued: int = 16,
        history: int = 1000,
        clock_ns: Callable[[], int] = time.time_ns,
        new_id: Callable[[], str] = new_run_id,
        on_change: Callable[[Job], None] | None = None,
        persist: Persist | None = None,
        check: Callable[[Spec], None] | None = None,
    ) -> None:
        if max_queued < 1 or history < 0:
            msg = f"max_queued must be >= 1 and history >= 0, got {max_queued} and {history}"
            raise ValueError(msg)
        self._run_session = run_session
        self._max_queued = max_queued
        self._history = history
        self._clock_ns = clock_ns
        self._new_id = new_id
        self._on_change = on_change
        self._persist = persist
        self._check = check
        self._accepting: set[str] = set()  # run ids being persisted by accept()
        self._jobs: dict[str, Job] = {}  # insertion order = submission order
        self._wake = asyncio.Event()
        self._closing = False
        self._stopped = asyncio.Event()

    # -- queries --------------------------------------------------------------------------

    @property
    def max_queued(self) -> int:
        """The queue bound."""
        return self._max_queued

    @property
    def accepting(self) -> bool:
        """False once ``drain`` has begun: new submissions are refused."""
        return not self._closing

    def get(self, run_id: str) -> Job | None:
        """The job with this run id, if this service lifetime still holds it."""
        return self._jobs.get(run_id)

    def list_jobs(self, state: JobState | None = None, limit: int | None = None) -> list[Job]:
        """Jobs newest first, only those in ``state`` if given, at most ``limit``."""
        jobs = [j for j in reversed(self._jobs.values()) if state is None or j.state is state]
        return jobs if limit is None else jobs[:limit]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state (all states listed)."""
        out = {s.value: 0 for s in JobState}
        for job in list(self._jobs.values()):
            out[job.state.value] += 1
        return out

    # -- commands -------------------------------------------------------------------------

    def submit(self, spec: Spec) -> str:
        """Queue a job in memory and return its run id (without ``persist``: tests, tools).

        Raises:
            QueueFullError: ``max_queued`` jobs are already waiting, or the service is stopping.
            RuntimeError: this scheduler persists its jobs: use :meth:`accept`.
        """
        if self._persist is not None:
            msg = "this scheduler persists its jobs: use accept()"
            raise RuntimeError(msg)
        return self._enqueue(self._new_job(spec))

    async def accept(self, spec: Spec) -> str:
        """Persist a job, then queue it; its run id. A job accepted here is never lost.

        Raises:
            QueueFullError: the queue is full, or the service is stopping.
            InfergyError: ``persist`` failed (the job is not queued).
        """
        job = self._new_job(spec)
        if self._persist is not None:
            self._accepting.add(job.run_id)
            try:
                await self._persist(job)
            finally:
                self._accepting.discard(job.run_id)
            if self._closing:  # a stop began meanwhile: the job is journalled, so it is kept
                self._jobs[job.run_id] = job
                logger.info("job %s queued (%s); it runs after the next start", job.run_id,
                            spec.scenario)  # fmt: skip
                self._changed(job)
                return job.run_id
        return self._enqueue(job)

    def restore(self, job: Job) -> None:
        """Take back a job a previous lifetime accepted (queued, or finished while recovered).

        The queue bound does not apply: these jobs were accepted already.
        """
        if job.run_id in self._jobs:
            msg = f"run id {job.run_id} is already in use"
            raise JobConflictError(msg)
        self._jobs[job.run_id] = job
        logger.info("job %s restored (%s)", job.run_id, job.state.value)
        self._changed(job)
        self._wake.set()

    def _new_job(self, spec: Spec) -> Job:
        if self._check is not None:
            self._check(spec)  # what this service cannot run is refused now, not failed later
        if self._closing:
            msg = "the service is stopping and accepts no new jobs"
            raise QueueFullError(msg, hint="submit again once the service has restarted")
        queued = len(self._accepting) + sum(
            1 for j in self._jobs.values() if j.state is JobState.QUEUED
        )
        if queued >= self._max_queued:
            msg = f"the job queue is full ({queued} of {self._max_queued} waiting)"
            hint = "retry later, cancel a queued job, or raise [serve] max_queued_jobs"
            raise QueueFullError(msg, hint=hint)
        run_id = self._new_id()
        if isinstance(spec, MaxqSpec):
            run_id = f"mq-{run_id}"
        if run_id in self._jobs or run_id in self._accepting:  # 24 random bits per second
            msg = f"run id {run_id} is already in use"
            raise JobConflictError(msg)
        return Job(run_id, spec, self._clock_ns())

    def _enqueue(self, job: Job) -> str:
        self._jobs[job.run_id] = job
        logger.info("job %s queued (%s)", job.run_id, job.spec.scenario)
        self._changed(job)
        self._wake.set()
        return job.run_id

    def cancel(self, run_id: str) -> Job:
        """Cancel a job: a queued one ends ``cancelled`` now, a running one ends ``aborted``.

        A running job's state changes when its session has unwound (``Job.task`` finishes).

        Raises:
            UnknownRunError: no such job in this service lifetime.
            JobConflictError: the job has already finished.
        """
        job = self._jobs.get(run_id)
        if job is None:
            msg = f"no queued or running job {run_id!r}"
            raise UnknownRunError(msg, hint="list the jobs with GET /v1/runs")
        if job.state.finished:
            msg = f"job {run_id} has already finished ({job.state.value})"
            raise JobConflictError(msg)
        job.cancel_requested = True
        job.abort_reason = CANCELLED_ON_REQUEST
        if job.state is JobState.QUEUED:
            self._finish(job, JobState.CANCELLED, error="cancelled before it started")
        elif job.task is not None:
            job.abort_reason = job.abort_reason or CANCELLED_ON_REQUEST
            job.task.cancel(msg=job.abort_reason)
        self._wake.set()
        return job

    # -- the dispatcher -------------------------------------------------------------------

    async def run(self) -> None:
        """Start jobs as their resources free up, until ``drain`` is done.

        Put it in the service's TaskGroup. Each session runs as a task named
        ``infergy-job-<run_id>`` in a TaskGroup of its own; cancelling ``run()`` aborts them.
        """
        try:
            async with asyncio.TaskGroup() as tg:
                while True:
                    self._wake.clear()
                    for job in self._startable():
                        job.state = JobState.RUNNING
                        job.started_unix_ns = self._clock_ns()
                        job.task = tg.create_task(
                            self._execute(job), name=f"infergy-job-{job.run_id}"
                        )
                        job.task.add_done_callback(functools.partial(self._on_done, job))
                        self._changed(job)
                    if self._closing and not self._active():
                        break
                    await self._wake.wait()
        finally:
            for job in list(self._jobs.values()):  # cancelled from outside before a job's task ran
                if job.state is JobState.RUNNING:
                    self._finish(job, JobState.ABORTED, error="the service stopped")
            self._stopped.set()

    async def drain(self, timeout_s: float, abort_timeout_s: float | None = None) -> None:
        """Stop gracefully: refuse new jobs, keep queued ones, let running ones finish.

        Queued jobs stay ``queued`` (the service journals them: they run after the next
        start). Running sessions get ``timeout_s`` to finish; then they are cancelled, ending
        ``aborted`` with the reason in their result, and get ``abort_timeout_s`` (default:
        ``timeout_s``) to store what they measured. Returns when ``run()`` has returned, or
        when that second wait has also run out (the caller then cancels its TaskGroup).
        """
        self._closing = True
        abort_s = timeout_s if abort_timeout_s is None else abort_timeout_s
        kept = [j.run_id for j in self._jobs.values() if j.state is JobState.QUEUED]
        if kept:
            logger.info("stopping: %d queued job(s) kept, to run after the next start: %s",
                        len(kept), ", ".join(kept))  # fmt: skip
        running = self._active()
        if running:
            logger.info("stopping: waiting up to %g s for job %s to finish", timeout_s,
                        ", ".join(j.run_id for j in running))  # fmt: skip
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._stopped.wait()
                return
        reason = (
            f"the service was stopping and the job did not finish within [serve] "
            f"stop_timeout_s = {timeout_s:g} s"
        )
        for job in self._active():
            logger.warning(
                "stopping: job %s did not finish within %g s: aborting it (up to %g s to keep"
                " what it measured)", job.run_id, timeout_s, abort_s,
            )  # fmt: skip
            job.cancel_requested = True
            job.abort_reason = reason
            if job.task is not None:
                job.task.cancel(msg=reason)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(abort_s):
                await self._stopped.wait()
                return
        logger.error("stopping: sessions still unwinding after %g s; giving up on them",
                     timeout_s + abort_s)  # fmt: skip

    # -- internals ------------------------------------------------------------------------

    def _active(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.state is JobState.RUNNING]

    def _startable(self) -> list[Job]:
        """Queued jobs, in order, that overlap no running job and no job queued before them."""
        if self._closing:
            return []
        ahead = self._active()
        out = []
        for job in list(self._jobs.values()):
            if job.state is not JobState.QUEUED:
                continue
            if not any(overlaps(job.spec, other.spec) for other in ahead):
                out.append(job)
            ahead.append(job)  # queued earlier: later jobs may not overtake it on its resources
        return out

    async def _execute(self, job: Job) -> None:
        """Run one session and record how it ended; only cancellation propagates."""
        try:
            result = await self._run_session(job.run_id, job.spec)
        except asyncio.CancelledError:
            self._finish(job, JobState.ABORTED, error=job.abort_reason or "the service stopped")
            raise
        except InfergyError as err:
            hint = f" ({err.hint})" if err.hint else ""
            self._finish(job, JobState.FAILED, error=f"{err}{hint}")
        except Exception as err:  # a session bug must not take the service down with it
            logger.exception("job %s: the session raised", job.run_id)
            self._finish(job, JobState.FAILED, error=f"internal error: {type(err).__name__}")
        else:
            self._finish_with(job, result)
        finally:
            self._wake.set()

    def _changed(self, job: Job) -> None:
        if self._on_change is not None:
            try:
                self._on_change(job)
            except Exception:  # an observer must not break the queue
                logger.exception("job %s: the on_change callback raised", job.run_id)

    def _on_done(self, job: Job, _task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step never ran ``_execute``'s handlers."""
        if job.state is JobState.RUNNING:
            self._finish(job, JobState.ABORTED, error="cancelled before the session started")
        self._wake.set()

    def _finish_with(self, job: Job, result: dict[str, Any]) -> None:
        job.result = result
        status = result.get("status") if isinstance(result, dict) else None
        if job.cancel_requested:  # the session swallowed the cancellation but did stop
            self._finish(job, JobState.ABORTED, error=job.abort_reason or CANCELLED_ON_REQUEST)
        elif status == JobState.DEGRADED and isinstance(job.spec, JobSpec) and job.spec.strict:
            self._finish(job, JobState.FAILED, error="the result is degraded and strict is set")
        elif status in (JobState.OK, JobState.DEGRADED, JobState.FAILED, JobState.ABORTED):
            problems = [str(p) for p in result.get("problems") or []]
            failed = status in (JobState.FAILED, JobState.ABORTED)
            why = [p for p in problems if p.startswith(_WHY_IT_ENDED)]  # the reason, not notes
            error = "; ".join(why or problems) if failed else None
            self._finish(job, JobState(status), error=error or None)
        else:
            self._finish(job, JobState.FAILED, error=f"the session returned status {status!r}")

    def _finish(self, job: Job, state: JobState, *, error: str | None) -> None:
        job.state = state
        job.error = error
        job.finished_unix_ns = self._clock_ns()
        job.task = None
        logger.info("job %s %s%s", job.run_id, state.value, f": {error}" if error else "")
        self._changed(job)
        finished = [j.run_id for j in self._jobs.values() if j.state.finished]
        for run_id in finished[: max(0, len(finished) - self._history)]:
            del self._jobs[run_id]
