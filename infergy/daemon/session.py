"""One measurement session, end to end (ARCHITECTURE.md, "One measurement session").

prepare -> idle baseline -> warm-up (+ the analyzer's ranging pass) -> measured LoadGen run ->
tail -> analyze -> persist and export. Every step can be cancelled (Ctrl-C, SIGTERM, an HTTP
DELETE): the run is then stored as ``aborted`` with everything sampled so far, the analyzer's
measurement is stopped and its ranges restored, and nothing is left running.

The collaborators are injected (``meters``, ``workloads``, ``store``, ``observer``) so the
same code runs under ``infergy run``, ``infergy serve`` and the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from infergy.config.settings import Settings
from infergy.core.analysis import analyze
from infergy.core.clock import SessionClock
from infergy.core.inputs import AnalysisOptions, Workload
from infergy.core.trace import NS_PER_S, QueryLog, Window
from infergy.daemon.disk import disk_problem
from infergy.daemon.jobs import JobSpec
from infergy.daemon.meters import MeterSet
from infergy.daemon.provenance import gpu_provenance
from infergy.daemon.session_keep import keep_outcome
from infergy.daemon.session_result import bare_result, result_identity
from infergy.daemon.session_types import (
    EXIT_DEGRADED,
    EXIT_FAILED,
    EXIT_OK,
    QuietObserver,
    SessionObserver,
    SessionOutcome,
    _State,
    unwrapped,
)
from infergy.errors import (
    AnalysisError,
    ConfigError,
    InfergyError,
    InputError,
    LoadgenSettingsError,
    WorkloadError,
)
from infergy.runners.preflight import preflight
from infergy.runners.scratch import remove_scratch
from infergy.runners.types import Progress, RunOutcome, WorkloadConfig

RunnerFactory = Callable[..., Awaitable[Any]]
MeterSetFactory = Callable[..., Awaitable[MeterSet]]

SHARED_LEAD_NS = 5_000_000_000
"""With shared meters, a session's traces start this long before it (an interval sample
straddling the start is kept whole)."""
IDLE_GUARD_S = 0.5
"""The idle baseline ends this long before the warm-up starts (meters' latency)."""


class Session:
    """One measurement: ``await Session(...).run()``; see the module docstring.

    Args:
        run_id: the id the result is stored under.
        spec: what to run.
        settings: the configuration.
        store: where results are kept (``None``: not stored).
        observer: progress sink.
        meters: builds the session's :class:`MeterSet` (tests inject fakes).
        runners: opens the workload (``infergy.runners.Workload.open`` by default).
        persist: extra sinks called with the final outcome (files, MQTT, Prometheus).
        env: the environment (GPU selection).
        shared_meters: meters that already sample (``infergy serve``): used, not opened/closed.
        checkpoint_s: with a store, keep the run's data so far every this many seconds.
        idle_window: an idle baseline measured before, on the shared meters' clock (a MaxQ
            sweep's one baseline for all its points): no idle phase of its own.
        abort_reason: says why the session is being cancelled (a DELETE, the service
            stopping), for the aborted result's problems.
    """

    def __init__(
        self,
        run_id: str,
        spec: JobSpec,
        settings: Settings,
        *,
        store: Any = None,
        observer: SessionObserver | None = None,
        meters: MeterSetFactory = MeterSet.open,
        runners: RunnerFactory | None = None,
        persist: tuple[Callable[[SessionOutcome], None], ...] = (),
        env: Mapping[str, str] | None = None,
        shared_meters: MeterSet | None = None,
        checkpoint_s: float = 0.0,
        idle_window: Window | None = None,
        abort_reason: Callable[[], str | None] | None = None,
    ) -> None:
        self.run_id, self.spec, self.settings = run_id, spec, settings
        self._idle_window = idle_window
        self._shared = shared_meters
        self.checkpoint_s = checkpoint_s
        self.store = store
        self.observer: SessionObserver = observer or QuietObserver()
        if runners is None:
            from infergy.runners import Workload  # noqa: PLC0415 (backends import lazily)

            runners = Workload.open
        self._meters_factory, self._runners_factory = meters, runners
        self._persist = persist
        self._env = env
        self._abort_reason = abort_reason
        self.meter_set: MeterSet | None = None
        self.runner: Any = None
        self._kept = False  # whether a result (and the run's folder) is kept

    # -- the lifecycle -------------------------------------------------------------------------

    async def run(self) -> SessionOutcome:
        """Run the session; on cancellation store an ``aborted`` result, then re-raise.

        A failure once the workload runs (the LoadGen process dies, a disk fills up) is not
        raised: the run is stored as ``failed`` with everything sampled and the reason.

        Raises:
            InfergyError: preparation failed (bad model, unusable meter...): nothing is stored.
            asyncio.CancelledError: the session was cancelled (the aborted result is stored
                and available as :attr:`aborted`).
        """
        shared = self._shared
        clock = shared.clock if shared is not None else SessionClock()
        st = _State(clock, clock.now_ns())
        self.aborted: SessionOutcome | None = None
        out_dir = self.settings.output.dir / self.run_id
        self._phase(st, "prepare", None)
        # What the job alone shows cannot work fails now, before a meter, a model or even the
        # run's folder is made (a refused run leaves nothing behind).
        preflight(self.spec.workload_config(tuple(self.spec.gpus or ())))
        await asyncio.to_thread(_make_run_dir, out_dir)
        gpu_backend = (self.spec.backend or "onnxruntime") in ("torch", "tensorrt", "sim")
        try:  # the service's meters are already sampling, and not ours to close
            meter_set = (
                shared
                if shared is not None
                else await self._meters_factory(
                    self.spec.meter,
                    self.settings,
                    clock,
                    gpus=None if self.spec.gpus is None else tuple(self.spec.gpus),
                    env=self._env,
                )
            )
        except BaseException:
            await asyncio.to_thread(remove_scratch, out_dir, keep_dir=False)
            raise
        self.meter_set = meter_set
        cfg = self._workload_config(meter_set if gpu_backend else None)
        nvml = meter_set.nvml()
        if nvml is not None and shared is not None:  # serve reads the counter slowly when idle
            nvml.set_counter_poll_factor(self.settings.meters.nvml.counter_poll_factor)
        try:
            for note in meter_set.notes:
                self.observer.note(note)
            async with unwrapped(), asyncio.TaskGroup() as tg:
                own = meter_set.meters if shared is None else []
                tasks = [tg.create_task(m.run(), name=f"meter[{m.name}]") for m in own]
                if self.store is not None and self.checkpoint_s > 0:
                    tasks.append(
                        tg.create_task(self._checkpoints(st, cfg, meter_set), name="checkpoint")
                    )
                try:
                    outcome = await self._measure_or_keep(st, cfg, out_dir, meter_set, tasks)
                finally:
                    for task in tasks:
                        task.cancel()
        finally:
            await self._close(out_dir, meter_set)
        return outcome

    async def _close(self, out_dir: Path, meter_set: MeterSet) -> None:
        """End the runner and our meters; remove the runner's scratch.

        When nothing of the run was kept, its folder goes too: the error says what failed.
        """
        if self.runner is not None:
            with contextlib.suppress(InfergyError):
                await self.runner.aclose()
        await asyncio.to_thread(remove_scratch, out_dir, keep_dir=self._kept)
        nvml = meter_set.nvml()
        if self._shared is None:
            await meter_set.aclose()
        elif nvml is not None:
            nvml.set_counter_poll_factor(self.settings.meters.nvml.idle_counter_poll_factor)

    async def _measure_or_keep(
        self,
        st: _State,
        cfg: WorkloadConfig,
        out_dir: Path,
        meter_set: MeterSet,
        tasks: list[asyncio.Task[Any]],
    ) -> SessionOutcome:
        """The measurement; cancelled or failed once running, what was sampled is kept."""
        try:
            return await self._measure(st, cfg, out_dir, meter_set)
        except asyncio.CancelledError:
            # a meter's error (raised by the TaskGroup) or a user cancelled us
            failed = _failure(tasks)
            if failed is None or st.phase != "prepare":  # else nothing worth keeping
                self.aborted = await self._abort(st, cfg, meter_set, out_dir, meter_failure=failed)
            raise
        except InfergyError as err:
            if self.runner is None:  # preparing failed: nothing was measured
                raise
            if isinstance(err, LoadgenSettingsError):
                # refused before LoadGen's test started (a token bound below what the warm-up
                # measured, a Server target far above it): bad input, nothing is kept
                st.settled = True  # no checkpoint from now on; the last one goes
                if self.store is not None:
                    await asyncio.to_thread(self.store.drop_checkpoint, self.run_id)
                raise
            return await self._abort(st, cfg, meter_set, out_dir, failure=err)

    async def _checkpoints(self, st: _State, cfg: WorkloadConfig, meter_set: MeterSet) -> None:
        """Store what the run has so far every ``checkpoint_s`` (survives a killed process)."""
        while True:
            await asyncio.sleep(self.checkpoint_s)
            if st.settled:  # the final result is being kept: a checkpoint would race it
                return
            partial = self.runner.partial() if self.runner is not None else None
            try:
                outcome = await asyncio.to_thread(
                    self._bare_result, st, cfg, meter_set, partial, "running"
                )
                outcome.result["problems"].append(f"checkpoint during the {st.phase} phase")
                await asyncio.to_thread(
                    self.store.checkpoint_run, outcome.result, outcome.traces, outcome.queries
                )
            except InfergyError as err:
                note = f"a checkpoint failed during the {st.phase} phase: {err}"
                self.observer.note(note)
                if not any(n.startswith("a checkpoint failed") for n in st.notes):
                    st.notes.append(note)  # once in the result: the data is kept in memory

    async def _measure(
        self, st: _State, cfg: WorkloadConfig, out_dir: Path, meter_set: MeterSet
    ) -> SessionOutcome:
        await meter_set.wait_ready()
        runner = await self._open_runner(st, cfg, out_dir, meter_set)
        meter_set.set_saturation(max(1, cfg.batch_size * max(1, len(cfg.gpus))))
        meter_set.set_simulated_load(cfg.batch_size, cfg.precision, cfg.workload)
        if cfg.backend == "sim" and meter_set.boards:  # the simulated work follows the boards
            await runner.simulate(meter_set.simulated_settings())
        st.gpus_start = gpu_provenance(meter_set)
        ticker = asyncio.create_task(self._tick(st, meter_set), name="session-progress")
        try:
            await self._idle(st)
            await self._warmup(st, runner, meter_set)
            self._phase(st, "run", self.spec.duration)
            st.run_started_ns = st.clock.now_ns()
            meter_set.window_start_near()  # dense counter reads around the window's edges
            try:
                run = st.outcome = await runner.run(on_progress=self._on_progress(st))
            finally:
                meter_set.window_end_near()
            self._phase(st, "tail", self.settings.session.tail_s)
            await asyncio.sleep(self.settings.session.tail_s)
        finally:
            ticker.cancel()
        if self._shared is None:  # a service's analyzers keep measuring between sessions
            await meter_set.stop_analyzers()
        self._phase(st, "analyze", None)
        st.settled = True
        outcome = await asyncio.to_thread(self._analyze, st, cfg, meter_set, run)
        await self._finish(outcome, out_dir, run.loadgen_dir)
        return outcome

    async def _open_runner(
        self, st: _State, cfg: WorkloadConfig, out_dir: Path, meter_set: MeterSet
    ) -> Any:
        try:
            await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
            # a simulated generative workload reports its steps' activity (their power)
            extra: dict[str, Any] = {"on_activity": meter_set.on_activity} if cfg.generative else {}
            self.runner = await self._runners_factory(
                cfg, st.clock, out_dir, on_in_flight=meter_set.on_in_flight, **extra
            )
        except OSError as err:  # the run's folder: nothing has been measured yet
            reason = disk_problem(out_dir) or err.strerror or str(err)
            msg = f"cannot write the run's folder {out_dir}: {reason}"
            raise InputError(
                msg, hint="check that [output] dir is writable and has space"
            ) from None
        return self.runner

    async def _idle(self, st: _State) -> None:
        """The idle baseline: given (a MaxQ sweep's, measured once), or measured now."""
        idle_s = self.spec.idle if self.spec.idle is not None else self.settings.analysis.idle_s
        if self._idle_window is not None:
            st.idle = self._idle_window
        elif idle_s > 0:
            self._phase(st, "idle", idle_s)
            t0 = st.clock.now_ns()
            await asyncio.sleep(idle_s + IDLE_GUARD_S)
            st.idle = Window(t0, t0 + round(idle_s * NS_PER_S))

    async def _warmup(self, st: _State, runner: Any, meter_set: MeterSet) -> None:
        """The warm-up, with MLPerf's ranging pass on analyzers that are not the stand-in.

        (The warm-up must then be representative of the run: same scenario and batch.)
        """
        analyzers = meter_set.ranging_meters()  # not the in-process stand-in
        ranging = self.settings.session.ranging and bool(analyzers)
        if ranging and self.spec.warmup > 0:
            for meter in analyzers:
                await meter.ranging()
        self._phase(st, "warmup", self.spec.warmup)
        if self.spec.warmup > 0:
            await runner.warmup(self.spec.warmup, on_progress=self._on_progress(st))
        if ranging and self.spec.warmup > 0:
            for meter in analyzers:
                volts, amps = await meter.testing()
                st.notes.append(
                    f"{meter.source}: ranging pass during warm-up; testing ranges "
                    f"{volts:g} V, {amps:g} A"
                )
        elif ranging:
            st.notes.append("no warm-up: the analyzer's ranging pass was skipped")

    async def _abort(
        self,
        st: _State,
        cfg: WorkloadConfig,
        meter_set: MeterSet,
        out_dir: Path,
        *,
        failure: InfergyError | None = None,
        meter_failure: tuple[str, BaseException] | None = None,
    ) -> SessionOutcome:
        """Keep what was sampled: an ``aborted`` (cancelled) or ``failed`` result.

        ``failure`` (the workload's error) or ``meter_failure`` (a meter task's name and
        error) make it ``failed``: nobody aborted it. Analysed over what ran, in a thread
        shielded from a second cancellation.
        """
        st.settled = True
        if self._shared is None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(meter_set.stop_analyzers())
        if failure is not None:
            hint = f" ({failure.hint})" if failure.hint else ""
            disk = disk_problem(out_dir)
            st.notes.append(f"failed during the {st.phase} phase: {failure}{hint}"
                            + (f"; {disk}" if disk else ""))  # fmt: skip
        elif meter_failure is not None:
            name, error = meter_failure
            st.notes.append(
                f"failed during the {st.phase} phase: {name}: {error}; everything sampled is kept"
            )
        else:
            reason = self._abort_reason() if self._abort_reason is not None else None
            why = f": {reason}" if reason else ""
            st.notes.append(f"aborted during the {st.phase} phase{why}; everything sampled is kept")
        partial = self.runner.partial() if self.runner is not None else None
        status = "aborted" if failure is None and meter_failure is None else "failed"
        outcome = await asyncio.shield(
            asyncio.to_thread(self._partial_outcome, st, cfg, meter_set, partial, status)
        )
        await self._finish(outcome, out_dir, None)
        return outcome

    def _partial_outcome(
        self,
        st: _State,
        cfg: WorkloadConfig,
        meter_set: MeterSet,
        partial: QueryLog | None,
        status: str,
    ) -> SessionOutcome:
        try:
            outcome = self._analyze(st, cfg, meter_set, None, partial=partial)
        except InfergyError as err:
            st.notes.append(f"no analysis of the partial run: {err}")
            outcome = self._bare_result(st, cfg, meter_set, partial)
        outcome.result["status"] = status
        return outcome

    # -- helpers -------------------------------------------------------------------------------

    def _workload_config(self, meter_set: MeterSet | None) -> WorkloadConfig:
        """The runner's config; a GPU backend without ``gpus`` takes every metered GPU."""
        spec = self.spec
        gpus = spec.gpus
        if gpus is None and meter_set is not None:
            nvml = meter_set.nvml()  # CUDA ordinals of the metered (visible) GPUs
            # without a GPU, torch generates on the CPU (the llm workload's tiny model)
            none = () if spec.resolved_workload == "llm" and spec.backend == "torch" else (0,)
            gpus = tuple(range(len(nvml.gpus))) if nvml is not None else none
        cfg = spec.workload_config(tuple(gpus or ()))
        if cfg.backend == "sim":
            cfg = sim_workload(cfg, meter_set, self.settings.meters.simulated_part)
        return cfg

    def _since_ns(self, st: _State) -> int | None:
        """Where this session's samples start (shared meters hold the service's whole past)."""
        if self._shared is None:
            return None
        start = st.started_ns if st.idle is None else min(st.started_ns, st.idle.start_ns)
        return start - SHARED_LEAD_NS

    def _phase(self, st: _State, name: str, duration_s: float | None) -> None:
        st.phase = name
        self.observer.phase(name, duration_s)

    def _on_progress(self, st: _State) -> Callable[[Progress], None]:
        def update(p: Progress) -> None:
            st.progress = p  # a plain attribute store: safe from the runner's threads

        return update

    async def _tick(self, st: _State, meter_set: MeterSet) -> None:
        while True:
            await asyncio.sleep(0.5)
            p = st.progress
            watts = meter_set.latest_watts()
            sim = meter_set.simulated_sources()
            if p is not None and p.phase in ("warmup", "run"):
                self.observer.progress(p.queries, p.samples, p.elapsed_s, watts, sim)
            else:
                elapsed = (st.clock.now_ns() - st.started_ns) / NS_PER_S
                self.observer.progress(0, 0, elapsed, watts, sim)

    def _identity(self, st: _State, cfg: WorkloadConfig, meter_set: MeterSet) -> dict[str, Any]:
        return result_identity(
            self.run_id,
            spec=self.spec,
            settings=self.settings,
            runner=self.runner,
            st=st,
            cfg=cfg,
            meter_set=meter_set,
        )

    def _analyze(
        self,
        st: _State,
        cfg: WorkloadConfig,
        meter_set: MeterSet,
        run: RunOutcome | None,
        *,
        partial: QueryLog | None = None,
    ) -> SessionOutcome:
        queries = run.queries if run is not None else partial
        inputs = meter_set.source_inputs(self._since_ns(st))  # first: it adds notes of its own
        problems = list(meter_set.notes) + st.notes + meter_set.health_problems()
        if run is not None:
            problems += run.problems  # an INVALID verdict is one of them, with LoadGen's reason
        if queries is None or len(queries) == 0:
            msg = "no query completed"
            raise AnalysisError(msg)
        window = Window.of_queries(queries)
        a = self.settings.analysis
        analysis = analyze(
            inputs,
            Workload.of_queries(
                cfg.scenario,
                queries,
                run.mlperf if run is not None else None,
                generation=run.generation if run is not None else None,
            ),
            window,
            identity=self._identity(st, cfg, meter_set),
            options=AnalysisOptions(
                gap_factor=a.gap_factor,
                degraded_coverage=a.degraded_coverage,
                align_max_lag_s=a.align_max_lag_s,
                idle_window=st.idle,
            ),
            problems=problems,
        )
        result = analysis.result
        if run is not None and run.degraded and result["status"] == "ok":
            result["status"] = "degraded"  # figures of what completed; the rest failed
        if run is not None:
            if run.validity != "VALID" and result["status"] == "ok":
                result["status"] = "degraded"  # not a valid LoadGen result: never "ok"
            result["loadgen"] = {
                "validity": run.validity,
                "valid": {"VALID": True, "INVALID": False}.get(run.validity),
                "power_begin_unix_ns": run.power_begin_ns,
                "power_end_unix_ns": run.power_end_ns,
                "window_disagreement_ms": run.window_disagreement_ms,
                **run.loadgen,
            }
        return SessionOutcome(result, analysis.traces, queries)

    def _bare_result(
        self,
        st: _State,
        cfg: WorkloadConfig,
        meter_set: MeterSet,
        partial: QueryLog | None,
        status: str = "aborted",
    ) -> SessionOutcome:
        """A result without figures (nothing analysed yet, or nothing could be), traces kept."""
        traces = {s.name: s.trace for s in meter_set.source_inputs(self._since_ns(st))}
        identity = self._identity(st, cfg, meter_set)
        problems = list(meter_set.notes) + st.notes
        result = bare_result(identity, st, cfg, partial, status=status, problems=problems)
        return SessionOutcome(result, traces, partial)

    async def _finish(
        self, outcome: SessionOutcome, out_dir: Path, loadgen_dir: Path | None
    ) -> None:
        """Persist: files and plots, then the store (off the loop), then the extra sinks.

        A write that fails is never silent: it is a note for the observer and a problem in
        the result; a result the store refused is marked :attr:`SessionOutcome.unstored` for
        the sinks (the service keeps it and retries).
        """
        self._kept = True  # the run's folder stays (see _close)
        keep = functools.partial(
            keep_outcome, store=self.store, plots=self.settings.session.plots,
            note=self.observer.note,
        )  # fmt: skip
        await asyncio.shield(asyncio.to_thread(keep, outcome, out_dir, loadgen_dir))
        for sink in self._persist:
            sink(outcome)


def _make_run_dir(path: Path) -> None:
    """Create the run's folder now, so a bad ``--out`` fails before anything starts."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        reason = disk_problem(path.parent) or err.strerror or str(err)
        msg = f"cannot create the run's folder {path}: {reason}"
        hint = "--out (or [output] dir) must be a writable directory"
        raise ConfigError(msg, hint=hint) from None


def _failure(tasks: list[asyncio.Task[Any]]) -> tuple[str, BaseException] | None:
    """The first of ``tasks`` that ended with an error: (its name, the error)."""
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            error = task.exception()
            assert error is not None
            return task.get_name(), error
    return None


def sim_workload(cfg: WorkloadConfig, meter_set: MeterSet | None, part: str) -> WorkloadConfig:
    """The ``sim`` backend's part: the simulated boards' (``model`` auto), and it must match.

    Raises:
        WorkloadError: the model names another part than the simulated GPUs are.
    """
    boards = meter_set.boards if meter_set is not None else []
    board_part = boards[0].part.key if boards else (part if part != "generic" else None)
    if cfg.model == "auto":
        return replace(cfg, model=board_part or "h200")
    if board_part is not None and cfg.model != board_part:
        msg = f"the sim workload simulates {cfg.model} but the simulated GPUs are {board_part}"
        raise WorkloadError(msg, hint=f"use --model {board_part} (or --model auto)")
    return cfg


__all__ = [
    "EXIT_DEGRADED",
    "EXIT_FAILED",
    "EXIT_OK",
    "Session",
    "SessionObserver",
    "SessionOutcome",
]
