"""One MaxQ tuning sweep, end to end: plan, journal, baselines, points, conclusion, restore.

``await MaxqSweep(sweep_id, spec, settings, store=store).run()``:

1. open (or share) the meters, find each metered GPU's control, plan the axes against the
   GPU's limits and clocks (errors name the allowed range), resolve ``auto`` batches;
2. restore a journal a killed sweep left; if the sweep changes settings, check permission on
   every GPU and write the restore journal *before the first change*
   (:func:`infergy.maxq.journal.start_changes`); without such axes nothing is ever set;
3. one idle baseline, then the default settings measured (``baseline-start``), every point
   the search asks for, and the default settings again (``baseline-end``), each a real
   session (:class:`~infergy.daemon.session.Session`) on the shared meters, stored as a run,
   on workloads prepared once (:class:`~infergy.daemon.maxq_pool.WorkloadPool`), after a
   settling time whenever the settings changed;
4. the conclusion (:mod:`infergy.daemon.maxq_record`) and the record, saved after every point.

The settings are restored and verified in ``finally``: at the end, on any error, on
cancellation (SIGTERM/SIGINT in the command line, DELETE in the service). A point whose
sources lost coverage (an analyzer lost) stops the sweep; one that is not ``ok`` or not
VALID is kept but never recommended (the search sees it as infeasible).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from infergy.config.settings import Settings
from infergy.core.clock import SessionClock
from infergy.core.trace import NS_PER_S, Window
from infergy.daemon.auto_batch import cached_auto_batch, resolve_auto_batch
from infergy.daemon.jobs import JobSpec
from infergy.daemon.maxq_controls import controls_for, describe_restore, restore_left_journal
from infergy.daemon.maxq_points import PointEntry, choose_source, entry_from_json, point_entry
from infergy.daemon.maxq_pool import WorkloadPool
from infergy.daemon.maxq_record import expected_measurements, point_json
from infergy.daemon.maxq_spec import MaxqSpec, plan_axes, point_job
from infergy.daemon.maxq_sweep_record import SweepRecord
from infergy.daemon.meters import MeterSet
from infergy.daemon.session import Session
from infergy.daemon.session_types import QuietObserver, SessionObserver, unwrapped
from infergy.errors import InfergyError, MeasurementFailedError
from infergy.maxq.control import GpuControl, GpuSettings, apply_settings
from infergy.maxq.coordinate import make_search
from infergy.maxq.errors import (
    ControlPermissionError,
    SweepSpecError,
    UnsupportedSettingError,
)
from infergy.maxq.journal import Journal, restore, start_changes
from infergy.maxq.plan import Axes, SweepPoint, plan_duration_s
from infergy.maxq.points import objective
from infergy.maxq.recommend import Constraints
from infergy.maxq.search import Observation, Search

INFEASIBLE_SCORE = -1e30
"""What the search is told for a point that may not be recommended (worse than any)."""
POINT_OVERHEAD_S = 4.0
"""A point's cost beyond settle, warm-up, run and tail (LoadGen start, analysis, store): a
planning guide; the record keeps each point's real ``overhead_s``."""


class SweepObserver(SessionObserver, Protocol):
    """What a sweep tells the outside world (a session observer, plus the sweep's steps)."""

    def planned(self, plan: Mapping[str, Any]) -> None:
        """The plan is ready (axes, points, time)."""

    def point_started(self, index: int, role: str, what: str) -> None:
        """A measurement begins (``what``: its settings in words)."""

    def point_finished(self, entry: Mapping[str, Any]) -> None:
        """A measurement ended (the record's ``points[]`` entry)."""


class QuietSweepObserver(QuietObserver):
    """Ignores everything (implements :class:`SweepObserver`)."""

    def planned(self, plan: Mapping[str, Any]) -> None:
        """Ignored."""

    def point_started(self, index: int, role: str, what: str) -> None:
        """Ignored."""

    def point_finished(self, entry: Mapping[str, Any]) -> None:
        """Ignored."""


@dataclass
class _Gpus:
    controls: list[GpuControl]
    default: GpuSettings | None = None
    applied: GpuSettings | None = None
    boards: list[Any] = field(default_factory=list)


class MaxqSweep:
    """One sweep (see the module docstring).

    Args:
        sweep_id: the record's id (points are ``<sweep_id>-pNN``).
        spec: what to sweep.
        settings: the configuration.
        store: the results store (points and the record), or None.
        observer: progress sink.
        meters: builds the meter set when not shared.
        runners: opens a workload (``Workload.open``).
        controls: the control of each metered GPU device (tests inject refusing ones).
        shared_meters: meters already sampling (the service): used, not opened or closed.
        resume: a stored record to continue (its spec wins).
        env: the environment.
        dry_run: plan only; nothing is measured, written or changed.
    """

    def __init__(
        self,
        sweep_id: str,
        spec: MaxqSpec,
        settings: Settings,
        *,
        store: Any = None,
        observer: SweepObserver | None = None,
        meters: Callable[..., Any] = MeterSet.open,
        runners: Callable[..., Any] | None = None,
        controls: Callable[[Sequence[object]], list[GpuControl | None]] = controls_for,
        shared_meters: MeterSet | None = None,
        resume: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> None:
        if resume is not None:
            sweep_id, spec = str(resume["sweep_id"]), MaxqSpec.model_validate(resume["spec"])
        self.sweep_id, self.spec, self.settings = sweep_id, spec, settings
        self.store = store
        self.observer: SweepObserver = observer or QuietSweepObserver()
        self._meters_factory, self._controls_factory = meters, controls
        if runners is None:
            from infergy.runners import Workload  # noqa: PLC0415 (backends import lazily)

            runners = Workload.open
        self._runners = runners
        self._shared = shared_meters
        self._resume = resume
        self._env = env
        self.dry_run = dry_run
        mq = settings.maxq
        self.point_duration_s = spec.point_duration or mq.point_duration_s
        self.warmup_s = mq.warmup_s if spec.warmup is None else spec.warmup
        self.settle_s = mq.settle_s if spec.settle is None else spec.settle
        self.idle_s = mq.idle_s if spec.idle is None else spec.idle
        self._environ: Mapping[str, str] = env if env is not None else os.environ
        self.state_dir = settings.maxq_state_dir(self._environ)
        self.constraints = Constraints(
            spec.max_latency_ms, spec.latency_percentile, spec.min_samples_per_second
        )
        self.objective = objective(spec.objective)
        self.record = SweepRecord(self.sweep_id, spec, resume)
        self.meter_set: MeterSet | None = None
        self._idle: Window | None = None
        self._source = spec.source or mq.source
        self._counter = len(self.record.entries)

    # -- the lifecycle -------------------------------------------------------------------------

    async def run(self) -> SweepRecord:
        """Run the sweep; the record (also when it stopped early, with the reason).

        Raises:
            InfergyError: the sweep could not start (bad axes, no permission, a journal owned
                by a running sweep...): nothing was changed. A failure after the start is in
                the returned record (``status`` ``failed``), settings restored.
            asyncio.CancelledError: cancelled; the record says ``aborted``, settings restored.
        """
        shared = self._shared
        clock = shared.clock if shared is not None else SessionClock()
        meter_set = shared or await self._meters_factory(
            self.spec.meter, self.settings, clock, gpus=self.spec.gpus, env=self._env
        )
        self.meter_set = meter_set
        try:
            gpus = self._gpus(meter_set)
            if self.dry_run:
                if self._needs_auto():
                    cached = cached_auto_batch(self._auto_job(), self.settings, self._environ)
                    self.record.auto_batch_size = None if cached is None else cached.batch_size
                await self._plan(meter_set, gpus)
                return self.record
            async with unwrapped(), asyncio.TaskGroup() as tg:
                own = meter_set.meters if shared is None else []
                tasks = [tg.create_task(m.run(), name=f"meter[{m.name}]") for m in own]
                try:
                    await self._resolve_auto(meter_set)
                    axes, search = await self._plan(meter_set, gpus)
                    await self._sweep(meter_set, gpus, axes, search)
                finally:
                    for task in tasks:
                        task.cancel()
        finally:
            if shared is None:
                with contextlib.suppress(InfergyError):
                    await meter_set.stop_analyzers()
                await meter_set.aclose()
        return self.record

    def _needs_auto(self) -> bool:
        spec = self.spec
        in_axis = spec.batch_sizes is not None and "auto" in spec.batch_sizes.lower()
        return self.record.auto_batch_size is None and (in_axis or spec.batch_size == "auto")

    def _auto_job(self) -> JobSpec:
        return self.spec.base_job(batch_size=1)

    async def _resolve_auto(self, meter_set: MeterSet) -> None:
        """``auto`` batches: the knee, cached or measured now by a read-only batch sweep."""
        if not self._needs_auto():
            return

        async def run_sweep(sweep_id: str, spec: MaxqSpec) -> SweepRecord:
            nested = MaxqSweep(
                sweep_id, spec, self.settings, store=self.store, observer=self.observer,
                runners=self._runners, controls=self._controls_factory,
                shared_meters=meter_set, env=self._env,
            )  # fmt: skip
            return await nested.run()

        found = await resolve_auto_batch(
            self._auto_job(), self.settings, env=self._environ,
            sweep_id=f"{self.sweep_id}-auto", run_sweep=run_sweep,
        )  # fmt: skip
        self.record.auto_batch_size = found.batch_size
        self.observer.note(found.describe())

    def _gpus(self, meter_set: MeterSet) -> _Gpus:
        nvml = meter_set.nvml()
        devices = dict(nvml.devices) if nvml is not None else {}
        if self._shared is not None and self.spec.gpus is not None:
            devices = {k: v for k, v in devices.items() if int(k[3:]) in self.spec.gpus}
        controls = self._controls_factory(list(devices.values()))
        if self.spec.changes_settings and (not controls or any(c is None for c in controls)):
            msg = "power-limit and clock sweeps need GPUs whose settings infergy can change"
            hint = (
                "real NVIDIA GPUs (root or CAP_SYS_ADMIN), or simulated ones with [meters] "
                'simulated_part = "h200" (or t4, l4, a2); else sweep batch sizes and precisions'
            )
            raise ControlPermissionError(msg, hint=hint)
        return _Gpus([c for c in controls if c is not None], boards=list(meter_set.boards))

    async def _plan(self, meter_set: MeterSet, gpus: _Gpus) -> tuple[Axes, Search]:
        spec = self.spec
        first = gpus.controls[0] if gpus.controls else None
        constraints = clocks = None
        if first is not None and spec.changes_settings:
            constraints, clocks = await asyncio.to_thread(
                lambda: (first.power_limit_constraints(), first.supported_clocks())
            )
            if spec.mem_clocks is not None and first.supports_memory_lock() is False:
                msg = f"--mem-clocks: {first.label} cannot lock its memory clock"
                raise UnsupportedSettingError(msg, hint="memory clock locks need Ampere or newer")
            gpus.default = GpuSettings(constraints.default_w, simulated=first.simulated)
        axes = plan_axes(spec, constraints, clocks, auto_batch=self.record.auto_batch_size)
        if "auto" in [str(b) for b in axes.batch_sizes] and not self.dry_run:
            msg = "--batch-sizes auto was not resolved"  # resolved by the caller beforehand
            raise SweepSpecError(msg, hint="resolve it with daemon.auto_batch first")
        expected = expected_measurements(axes, spec.search)
        per_point = self.warmup_s + self.point_duration_s + self.settings.session.tail_s
        settle = self.settle_s if spec.changes_settings else 0.0
        estimated_s = plan_duration_s(
            expected + 2, point_duration_s=per_point + POINT_OVERHEAD_S, settle_s=settle,
            fixed_s=self.idle_s,
        )  # fmt: skip
        self.record.set_plan(
            axes=axes, grid_points=axes.size, expected=expected, estimated_s=estimated_s,
            point_duration_s=self.point_duration_s, warmup_s=self.warmup_s,
            settle_s=self.settle_s, idle_s=self.idle_s, changes_settings=spec.changes_settings,
            gpus=[_gpu_json(c) for c in gpus.controls], constraints=constraints,
            simulated=bool(meter_set.simulated) or any(c.simulated for c in gpus.controls)
            or (spec.backend == "sim"),
        )  # fmt: skip
        self.observer.planned(self.record.body["plan"])
        return axes, make_search(axes, spec.search)

    async def _sweep(self, meter_set: MeterSet, gpus: _Gpus, axes: Axes, search: Search) -> None:
        report = await asyncio.to_thread(restore_left_journal, self.state_dir, gpus.boards)
        if report is not None:
            self.observer.note(describe_restore(report))
            self.record.problems.append(describe_restore(report))
        journal: Journal | None = None
        if self.spec.changes_settings:  # raises before any change: no permission, a journal
            journal = await asyncio.to_thread(
                start_changes, self.state_dir, gpus.controls, sweep_id=self.sweep_id
            )
            self.record.journaled(journal)
        pool = WorkloadPool(
            self.settings.output.dir / self.sweep_id, self._runners,
            max_open=self.settings.maxq.max_open_workloads,
        )  # fmt: skip
        status = "failed"
        try:
            self._save("running")
            await self._measure_all(meter_set, gpus, axes, search, pool)
            status = "ok"
        except asyncio.CancelledError:
            status = "aborted"
            self.record.problems.append("the sweep was interrupted (SIGTERM, SIGINT or a cancel)")
            raise
        except InfergyError as err:
            self.record.stopped(err)
            self.observer.note(f"sweep stopped: {err}")
        finally:
            if journal is not None:
                self._restore(journal, gpus)  # first: nothing may leave a GPU changed
            await pool.aclose()
            self.record.workloads_prepared = pool.opened
            self.record.prepare_s = pool.prepare_s
            self.record.conclude(self.objective.name, self.constraints)
            self._save(status)

    def _restore(self, journal: Journal, gpus: _Gpus) -> None:
        try:
            report = restore(journal, gpus.controls)
        except InfergyError as err:
            self.record.restored(None, str(err))
            self.observer.note(f"RESTORE FAILED: {err}")
            return
        self.record.restored(list(report.restored), None)

    # -- the measurements ----------------------------------------------------------------------

    async def _measure_all(
        self, meter_set: MeterSet, gpus: _Gpus, axes: Axes, search: Search, pool: WorkloadPool
    ) -> None:
        base = self.spec.base_job(batch_size=self.record.base_batch_size(self.spec))
        await self._idle_baseline(meter_set)
        baseline = self._baseline_point(axes, base)
        start = self.record.entry("baseline-start")
        if start is None:
            start = await self._measure(
                meter_set, gpus, pool, base, point=None, role="baseline-start"
            )
        if baseline is not None and start.usable:
            search.tell(baseline, self._observation(start))
        for entry in [e for e in self.record.entries if e.role == "point"]:  # --resume
            asked = search.ask()
            point = entry.measured.point if entry.measured is not None else _point(entry.point)
            if asked != point:
                self.observer.note(f"resume: the search asked {asked}, the record has {point}")
            search.tell(point, self._observation(entry))
        limit = 2 * search.grid_size
        while (asked := search.ask()) is not None and limit > 0:
            limit -= 1
            entry = await self._measure(meter_set, gpus, pool, base, point=asked, role="point")
            search.tell(asked, self._observation(entry))
        await self._measure(meter_set, gpus, pool, base, point=None, role="baseline-end")

    async def _idle_baseline(self, meter_set: MeterSet) -> None:
        await meter_set.wait_ready()
        if self.idle_s <= 0:
            return
        self.observer.phase("idle", self.idle_s)
        t0 = meter_set.clock.now_ns()
        await asyncio.sleep(self.idle_s + 0.5)
        self._idle = Window(t0, t0 + round(self.idle_s * NS_PER_S))
        self.record.set_idle(self._idle)

    def _baseline_point(self, axes: Axes, base: JobSpec) -> SweepPoint | None:
        """The grid point that is the default settings (its start measurement is reused)."""
        if axes.sm_clocks_mhz or axes.mem_clocks_mhz:
            return None  # every point of such a grid locks a clock: none is the default
        default_w = self.record.default_power_limit_w
        point = SweepPoint(
            power_limit_w=default_w if axes.power_limits_w else None,
            batch_size=base.batch_size if axes.batch_sizes else None,
            precision=base.precision if axes.precisions else None,
        )
        return point if point in set(axes.grid()) else None

    async def _measure(
        self,
        meter_set: MeterSet,
        gpus: _Gpus,
        pool: WorkloadPool,
        base: JobSpec,
        *,
        point: SweepPoint | None,
        role: str,
    ) -> PointEntry:
        self._counter += 1
        index = self._counter
        suffix = {"baseline-start": "start", "baseline-end": "end"}.get(role, f"p{index:02d}")
        run_id = f"{self.sweep_id}-{suffix}"
        what = point.describe() if point is not None else "default settings"
        self.observer.point_started(index, role, what)
        t0 = time.monotonic()
        target = self._target(gpus, point)
        if target is not None and gpus.applied != target:
            await asyncio.to_thread(_apply_all, gpus.controls, target)
            gpus.applied = target
            if self.settle_s > 0:
                self.observer.phase("settle", self.settle_s)
                await asyncio.sleep(self.settle_s)
        job = point_job(
            self.spec, point or SweepPoint(), base, duration=self.point_duration_s,
            warmup=self.warmup_s, idle=0.0, label=f"maxq {self.sweep_id} {suffix}: {what}",
        )  # fmt: skip
        session = Session(
            run_id, job, self._point_settings(), store=self.store, observer=self.observer,
            runners=pool.lease, shared_meters=meter_set, idle_window=self._idle,
        )  # fmt: skip
        try:
            outcome = await session.run()
        except asyncio.CancelledError:
            if session.aborted is not None:
                self.record.add_aborted(index, role, run_id, point_json(point))
            raise
        shown = point or SweepPoint(
            power_limit_w=self.record.default_power_limit_w,
            batch_size=job.resolved_batch_size,
            precision=job.resolved_precision,
        )  # a baseline: the default settings, in full
        entry = self._entry(outcome.result, index=index, role=role, point=shown, job=job, gpus=gpus)
        entry.wall_s = time.monotonic() - t0
        self.record.add(entry, self.objective)
        self.observer.point_finished(self.record.entry_json(entry, self.objective))
        self._save("running")
        if entry.lost_sources:
            msg = (
                f"{', '.join(entry.lost_sources)} lost coverage during {run_id} (an analyzer or "
                f"GPU lost?): the sweep stopped after {len(self.record.entries)} measurements"
            )
            raise MeasurementFailedError(
                msg, hint="check the meters; `--resume` continues the sweep"
            )
        return entry

    def _target(self, gpus: _Gpus, point: SweepPoint | None) -> GpuSettings | None:
        if gpus.default is None:
            return None  # a read-only sweep: no setter is ever called
        if point is None:
            return gpus.default
        return GpuSettings(
            power_limit_w=point.power_limit_w or gpus.default.power_limit_w,
            sm_lock_mhz=None if point.sm_clock_mhz is None else (point.sm_clock_mhz,) * 2,
            mem_lock_mhz=None if point.mem_clock_mhz is None else (point.mem_clock_mhz,) * 2,
            simulated=gpus.default.simulated,
        )

    def _entry(
        self,
        result: Mapping[str, Any],
        *,
        index: int,
        role: str,
        point: SweepPoint,
        job: JobSpec,
        gpus: _Gpus,
    ) -> PointEntry:
        if self._source == "auto" or role == "baseline-start":
            chosen = choose_source(result, self._source)
            if chosen is None:
                msg = f"the results have no power source {self._source!r} to optimise"
                raise SweepSpecError(msg, hint="choose one with --source (gpu0, ac...)")
            self._source = chosen
            self.record.source = chosen
        limits = [c.enforced_power_limit_w() for c in gpus.controls] if gpus.default else []
        ordered = None
        if role == "point" and point.power_limit_w is not None:
            ordered = "power_limit_w"
        elif role == "point" and point.sm_clock_mhz is not None:
            ordered = "sm_clock_mhz"
        return point_entry(
            result, index=index, role=role, point=point_json(point) or {},
            source=self._source, batch_size=job.resolved_batch_size,
            degraded_coverage=self.settings.analysis.degraded_coverage,
            limit_w=sum(limits) if limits else None, ordered_axis=ordered,
            enforced_limit_w=sum(limits) if limits else None,
            simulated=self.record.simulated,
        )  # fmt: skip

    def _observation(self, entry: PointEntry) -> Observation:
        """What the search sees: the objective, or infeasible for an unusable point."""
        m = entry.measured
        if m is None or not entry.usable or self.constraints.violations(m):
            return Observation(INFEASIBLE_SCORE, 0.0)
        return self.objective.observation(m)

    def _point_settings(self) -> Settings:
        """Points draw no per-run plots (the sweep draws its own); meters keep measuring."""
        s = self.settings
        session = s.session.model_copy(update={"plots": False})
        nvml = s.meters.nvml.model_copy(
            update={"idle_counter_poll_factor": s.meters.nvml.counter_poll_factor}
        )
        meters = s.meters.model_copy(update={"nvml": nvml})
        update: dict[str, Any] = {"session": session}
        if self._shared is None:
            update["meters"] = meters
        return s.model_copy(update=update)

    def _save(self, status: str) -> None:
        self.record.status = status
        if self.store is not None:
            self.store.save_sweep(self.record.body_json())


def _apply_all(controls: Sequence[GpuControl], target: GpuSettings) -> None:
    for control in controls:
        apply_settings(control, target)


def _gpu_json(control: GpuControl) -> dict[str, Any]:
    return {"uuid": control.uuid, "label": control.label, "simulated": control.simulated}


def _point(body: Mapping[str, Any]) -> SweepPoint:
    return SweepPoint(**{k: body.get(k) for k in SweepPoint.__dataclass_fields__})


def load_resume(store: Any, sweep_id: str) -> dict[str, Any]:
    """A stored sweep to continue (``--resume ID``).

    Raises:
        SweepSpecError: it finished already.
    """
    record: dict[str, Any] = store.get_sweep(sweep_id)
    if record.get("status") == "ok":
        msg = f"sweep {record['sweep_id']} finished; there is nothing to resume"
        raise SweepSpecError(msg, hint="start a new sweep")
    record["entries_loaded"] = [entry_from_json(p) for p in record.get("points") or []]
    return record


__all__ = ["INFEASIBLE_SCORE", "MaxqSweep", "Path", "SweepObserver", "load_resume"]
