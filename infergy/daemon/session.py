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
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from infergy.config.settings import Settings
from infergy.core.analysis import analyze
from infergy.core.clock import SessionClock
from infergy.core.inputs import AnalysisOptions, Workload
from infergy.core.trace import NS_PER_S, QueryLog, Window
from infergy.daemon.jobs import JobSpec
from infergy.daemon.meters import MeterSet
from infergy.daemon.provenance import gpu_provenance
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
from infergy.errors import AnalysisError, InfergyError
from infergy.exporters.files import write_run_files
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
    ) -> None:
        self.run_id, self.spec, self.settings = run_id, spec, settings
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
        self.meter_set: MeterSet | None = None
        self.runner: Any = None

    # -- the lifecycle -------------------------------------------------------------------------

    async def run(self) -> SessionOutcome:
        """Run the session; on cancellation store an ``aborted`` result, then re-raise.

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
        gpu_backend = (self.spec.backend or "onnxruntime") in ("torch", "tensorrt")
        if shared is not None:
            meter_set = shared  # the service's meters: already sampling, not ours to close
        else:
            meter_set = await self._meters_factory(
                self.spec.meter,
                self.settings,
                clock,
                gpus=None if self.spec.gpus is None else tuple(self.spec.gpus),
                env=self._env,
            )
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
                    outcome = await self._measure(st, cfg, out_dir, meter_set)
                except asyncio.CancelledError:
                    outcome = await self._abort(st, cfg, meter_set, out_dir)
                    self.aborted = outcome
                    raise
                finally:
                    for task in tasks:
                        task.cancel()
        finally:
            if self.runner is not None:
                with contextlib.suppress(InfergyError):
                    await self.runner.aclose()
            if shared is None:
                await meter_set.aclose()
            elif nvml is not None:
                nvml.set_counter_poll_factor(self.settings.meters.nvml.idle_counter_poll_factor)
        return outcome

    async def _checkpoints(self, st: _State, cfg: WorkloadConfig, meter_set: MeterSet) -> None:
        """Store what the run has so far every ``checkpoint_s`` (survives a killed process)."""
        while True:
            await asyncio.sleep(self.checkpoint_s)
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
                self.observer.note(f"checkpoint failed: {err}")

    async def _measure(
        self, st: _State, cfg: WorkloadConfig, out_dir: Path, meter_set: MeterSet
    ) -> SessionOutcome:
        await meter_set.wait_ready()
        out_dir.mkdir(parents=True, exist_ok=True)
        self.runner = runner = await self._runners_factory(
            cfg, st.clock, out_dir, on_in_flight=meter_set.on_in_flight
        )
        meter_set.set_saturation(max(1, cfg.batch_size * max(1, len(cfg.gpus))))
        st.gpus_start = gpu_provenance(meter_set)
        ticker = asyncio.create_task(self._tick(st, meter_set), name="session-progress")
        try:
            idle_s = self.spec.idle if self.spec.idle is not None else self.settings.analysis.idle_s
            if idle_s > 0:
                self._phase(st, "idle", idle_s)
                t0 = st.clock.now_ns()
                await asyncio.sleep(idle_s + IDLE_GUARD_S)
                st.idle = Window(t0, t0 + round(idle_s * NS_PER_S))
            # MLPerf's ranging pass, on analyzers that are not the stand-in, during the
            # warm-up (which must then be representative of the run: same scenario and batch).
            analyzers = meter_set.ranging_meters()
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
            self._phase(st, "run", self.spec.duration)
            st.run_started_ns = st.clock.now_ns()
            run = st.outcome = await runner.run(on_progress=self._on_progress(st))
            self._phase(st, "tail", self.settings.session.tail_s)
            await asyncio.sleep(self.settings.session.tail_s)
        finally:
            ticker.cancel()
        if self._shared is None:  # a service's analyzers keep measuring between sessions
            await meter_set.stop_analyzers()
        self._phase(st, "analyze", None)
        outcome = await asyncio.to_thread(self._analyze, st, cfg, meter_set, run)
        self._finish(outcome, out_dir, run.loadgen_dir)
        return outcome

    async def _abort(
        self, st: _State, cfg: WorkloadConfig, meter_set: MeterSet, out_dir: Path
    ) -> SessionOutcome:
        """Keep what was sampled: an ``aborted`` result, analysed over what ran."""
        if self._shared is None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(meter_set.stop_analyzers())
        partial = self.runner.partial() if self.runner is not None else None
        st.notes.append(f"aborted during the {st.phase} phase; everything sampled is kept")
        try:
            outcome = self._analyze(st, cfg, meter_set, None, partial=partial)
        except InfergyError as err:
            st.notes.append(f"no analysis of the partial run: {err}")
            outcome = self._bare_result(st, cfg, meter_set, partial)
        outcome.result["status"] = "aborted"
        self._finish(outcome, out_dir, None)
        return outcome

    # -- helpers -------------------------------------------------------------------------------

    def _workload_config(self, meter_set: MeterSet | None) -> WorkloadConfig:
        """The runner's config; a GPU backend without ``gpus`` takes every metered GPU."""
        spec = self.spec
        gpus = spec.gpus
        if gpus is None and meter_set is not None:
            nvml = meter_set.nvml()  # CUDA ordinals of the metered (visible) GPUs
            gpus = tuple(range(len(nvml.gpus))) if nvml is not None else (0,)
        return spec.workload_config(tuple(gpus or ()))

    def _since_ns(self, st: _State) -> int | None:
        """Where this session's samples start (shared meters hold the service's whole past)."""
        return None if self._shared is None else st.started_ns - SHARED_LEAD_NS

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
            problems += run.problems
            if run.validity != "VALID":
                problems.append(f"LoadGen reports the run {run.validity}")
        if queries is None or len(queries) == 0:
            msg = "no query completed"
            raise AnalysisError(msg)
        window = Window.of_queries(queries)
        a = self.settings.analysis
        analysis = analyze(
            inputs,
            Workload.of_queries(cfg.scenario, queries),
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
        if run is not None:
            result["loadgen"] = {
                "validity": run.validity,
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

    def _finish(self, outcome: SessionOutcome, out_dir: Path, loadgen_dir: Path | None) -> None:
        """Persist: store, then files and plots, then the extra sinks. Failures become problems."""
        if self.store is not None:
            self.store.save_run(outcome.result, outcome.traces, outcome.queries)
        try:
            outcome.files = write_run_files(
                out_dir.parent, outcome.result, outcome.traces, outcome.queries, loadgen_dir
            )
            if self.settings.session.plots:
                from infergy.exporters.plots import draw_run_plots  # noqa: PLC0415

                outcome.files += draw_run_plots(
                    out_dir, outcome.result, outcome.traces, outcome.queries
                )
        except InfergyError as err:
            self.observer.note(f"could not write every file: {err}")
        for sink in self._persist:
            sink(outcome)


__all__ = [
    "EXIT_DEGRADED",
    "EXIT_FAILED",
    "EXIT_OK",
    "Session",
    "SessionObserver",
    "SessionOutcome",
]
