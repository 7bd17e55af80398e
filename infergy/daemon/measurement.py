"""``infergy.Measurement``: measure any Python code, window by window, with ``run``'s meters.

::

    import infergy

    with infergy.Measurement() as m:          # meters chosen as `infergy run` chooses them
        m.begin_window("batch")
        model(batch)
        w = m.end_window("batch")
    print(w["gpu0"].energy_j, w["gpu0"].per_item(len(batch)))   # J, J per sample

The meters (a :class:`~infergy.daemon.meters.MeterSet`) sample on a background thread that
runs its own event loop, so the caller's code stays synchronous. A window is two session-clock
timestamps and a dict entry under a lock (:mod:`infergy.daemon.windows`); its figures are
computed when first read, by the core -- :func:`~infergy.core.energy.window_energy`,
:func:`~infergy.core.uncertainty.energy_uncertainty`, :func:`~infergy.core.combine.sum_traces`
for ``gpus`` -- over the meters' traces, exactly as ``infergy run`` computes a run's figures.
While measuring, reading a window waits (bounded by ``settle_timeout_s``) until every live
source has sampled past the window's end; after the measurement ended it is immediate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from infergy.config.settings import Settings, load_settings
from infergy.core.clock import SessionClock
from infergy.core.energy import idle_watts
from infergy.core.inputs import SourceInput
from infergy.core.trace import NS_PER_S
from infergy.core.trace import Window as Span
from infergy.daemon.meters import MeterSet
from infergy.daemon.session_types import unwrapped
from infergy.daemon.window_figures import (
    GPU_NAME,
    LEAD_NS,
    STALE_NS,
    Snapshot,
    build_snapshot,
    no_samples,
    sampled_past,
    source_figures,
)
from infergy.daemon.windows import MAX_ENDED_WINDOWS, SourceEnergy, Window, WindowBook
from infergy.errors import InfergyError, MeasurementFailedError, TraceError, WindowError

__all__ = ["Measurement", "SourceEnergy", "Window"]

REUSE_NS = 30 * NS_PER_S
"""A rebuilt snapshot reaches this much further back, so windows read out of order share it."""
SETTLE_POLL_S = 0.01
START_TIMEOUT_S = 120.0
IDLE_GUARD_S = 0.5


class Measurement:
    """Power measurement around any code: ``with Measurement(...) as m:``; see the module doc.

    Args:
        meters: ``nvml``, ``rapl``, ``sim``, ``ptd://HOST:PORT``; empty: chosen automatically
            as ``infergy run`` does (NVML per GPU, ``[meters] ptd``, RAPL when readable, else
            the emulated analyzer, labelled SIMULATED).
        config: a TOML config file (default: ``$INFERGY_CONFIG``, else the defaults).
        settings: a loaded configuration (instead of ``config``).
        gpus: GPU indices to meter (default: every visible GPU).
        idle_s: an idle baseline of this many seconds when the measurement starts; every
            source then reports ``idle_w``.
        settle_timeout_s: how long reading a window waits for samples past its end.
        max_windows: ended windows remembered by :attr:`windows`.
        env: the environment (GPU selection, ``INFERGY_*``); default ``os.environ``.

    Raises (from :meth:`start` / ``with``):
        MeterError: a requested meter cannot be opened (with the reason).
        ConfigError: the config file or a meter name is invalid.
    """

    def __init__(
        self,
        meters: Sequence[str] = (),
        *,
        config: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
        gpus: Sequence[int] | None = None,
        idle_s: float = 0.0,
        settle_timeout_s: float = 5.0,
        max_windows: int = MAX_ENDED_WINDOWS,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(meters, str):
            meters = (meters,)
        if not (isinstance(idle_s, int | float) and 0 <= idle_s <= 3600):
            msg = f"idle_s must be between 0 and 3600 s, got {idle_s!r}"
            raise WindowError(msg)
        self._requested = tuple(meters)
        self._env = env
        if settings is None:
            settings = load_settings(None if config is None else Path(config), env)
        self.settings = settings
        self._gpus = None if gpus is None else tuple(gpus)
        self.idle_s = float(idle_s)
        self.settle_timeout_s = settle_timeout_s
        self.clock = SessionClock()
        """The session clock every timestamp is on (int64 ns, Unix epoch, UTC)."""
        self._book = WindowBook(self.clock, self._figures_of, max_ended=max_windows)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._done = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._meter_set: MeterSet | None = None
        self._lock = threading.Lock()  # the snapshot cache
        self._snapshot: Snapshot | None = None
        self._final_inputs: list[SourceInput] | None = None
        self._simulated: frozenset[str] = frozenset()
        self._idle_w: dict[str, float | None] = {}
        self._problems: list[str] = []
        self._description: dict[str, Any] = {}
        self.started_ns: int | None = None
        """When the meters were sampling and windows could begin."""
        self.idle_window: Span | None = None
        """The idle baseline, when one was taken."""
        self.closed_ns: int | None = None

    # -- windows (the caller's threads; cheap) ------------------------------------------------

    def begin_window(self, name: str) -> None:
        """Open the window ``name`` now (any thread; names are shared by all threads).

        Raises:
            WindowError: ``name`` is already open, or the measurement is not running.
        """
        self._book.begin(name)

    def end_window(self, name: str) -> Window:
        """Close the window ``name`` now; its figures are computed when first read.

        Raises:
            WindowError: ``name`` was never begun or was already ended.
        """
        return self._book.end(name)

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator[_WindowSlot]:
        """``with m.window("step") as slot: ...`` then ``slot.window`` holds the ended window."""
        slot = _WindowSlot()
        self.begin_window(name)
        try:
            yield slot
        finally:
            slot.window = self.end_window(name)

    @property
    def windows(self) -> list[Window]:
        """The ended windows (the last ``max_windows``), oldest first."""
        return self._book.ended()

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Measurement:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> Measurement:
        """Open the meters and start sampling (returns when windows can begin)."""
        if self._thread is not None:
            msg = "this Measurement was already started (a Measurement runs once)"
            raise WindowError(msg, hint="create a new infergy.Measurement")
        self._thread = threading.Thread(
            target=self._thread_main, name="infergy-measurement", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S + self.idle_s):
            msg = f"the meters did not start within {START_TIMEOUT_S + self.idle_s:g} s"
            raise MeasurementFailedError(msg)
        if self._start_error is not None:
            self._thread.join(30)
            err = self._start_error
            if isinstance(err, InfergyError):
                raise err
            msg = f"the meters failed to start: {type(err).__name__}: {err}"
            raise MeasurementFailedError(msg) from err
        self._book.accepting = True
        return self

    def close(self) -> None:
        """End the measurement: sample past the last window, keep the traces, close the meters.

        Windows still open are dropped and listed in :attr:`problems`. Idempotent.
        """
        if self._thread is None or self.closed_ns is not None:
            return
        self.closed_ns = self.clock.now_ns()
        for name in self._book.close():
            self._problems.append(f"window {name!r} was begun but never ended (dropped)")
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended (a meter died)
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(self.settings.session.tail_s + 60)

    # -- results ------------------------------------------------------------------------------

    @property
    def meter_set(self) -> MeterSet | None:
        """The open meters (None before :meth:`start`; closed after :meth:`close`)."""
        return self._meter_set

    @property
    def sources(self) -> list[str]:
        """The source names (``gpu0``, ``gpu0.samples``, ``ac``...) of the open meters."""
        if self._final_inputs is not None:
            return [s.name for s in self._final_inputs]
        ms = self._meter_set
        return [] if ms is None else [info.name for _, info in ms.sources()]

    @property
    def simulated(self) -> frozenset[str]:
        """Sources whose readings are simulated (SIMULATED in every output)."""
        return self._simulated

    @property
    def problems(self) -> list[str]:
        """Meter notes, sampling errors, windows left open: one line each."""
        seen: dict[str, None] = dict.fromkeys(self._problems)
        ms = self._meter_set
        if ms is not None and self._final_inputs is None:
            seen.update(dict.fromkeys([*ms.notes, *ms.health_problems()]))
        return list(seen)

    @property
    def meters_description(self) -> dict[str, Any]:
        """Provenance of the sources (devices, semantics, simulated flags, clock offsets)."""
        ms = self._meter_set
        if self._final_inputs is None and ms is not None:
            return ms.describe()
        return dict(self._description)

    def source_inputs(self) -> list[SourceInput]:
        """Every source's whole trace, for :func:`infergy.core.analysis.analyze` (after close)."""
        if self._final_inputs is None:
            msg = "the traces are kept when the measurement ends: close it first"
            raise WindowError(msg)
        return list(self._final_inputs)

    # -- the meters' thread -------------------------------------------------------------------

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # never lost: start() or problems report it
            if not self._ready.is_set():
                self._start_error = err
            else:
                self._problems.append(f"the meters stopped: {type(err).__name__}: {err}")
        finally:
            self._ready.set()
            self._done.set()

    async def _main(self) -> None:
        meter_set = await MeterSet.open(
            self._requested, self.settings, self.clock, gpus=self._gpus, env=self._env
        )
        self._meter_set = meter_set
        self._simulated = frozenset(
            {info.name for _, info in meter_set.sources() if info.simulated} | meter_set.simulated
        )
        if meter_set.simulated:  # simulated devices follow whether any window is open
            meter_set.set_saturation(1)
            self._book.on_change = meter_set.on_in_flight
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            async with unwrapped(), asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(m.run(), name=f"meter[{m.name}]") for m in meter_set.meters]
                await self._prepare(meter_set)
                await self._stop.wait()
                tail_s = self.settings.session.tail_s
                await asyncio.to_thread(self._settle, self.clock.now_ns(), tail_s)
                await meter_set.stop_analyzers()
                self._capture(meter_set)
                for task in tasks:
                    task.cancel()
        finally:
            if self._final_inputs is None and self._ready.is_set():
                with contextlib.suppress(InfergyError, TraceError):
                    self._capture(meter_set)
            await meter_set.aclose()

    async def _prepare(self, meter_set: MeterSet) -> None:
        """Wait for network meters and first samples, take the idle baseline, let windows begin."""
        await meter_set.wait_ready()
        await asyncio.to_thread(self._first_samples, meter_set)
        if self.idle_s > 0:
            t0 = self.clock.now_ns()
            await asyncio.sleep(self.idle_s + IDLE_GUARD_S)
            idle = self.idle_window = Span(t0, t0 + round(self.idle_s * NS_PER_S))
            gap = self.settings.analysis.gap_factor
            for s in meter_set.source_inputs(idle.start_ns - LEAD_NS):
                self._idle_w[s.name] = idle_watts(s.trace, idle, gap_factor=gap)
            gpus = [v for k, v in self._idle_w.items() if GPU_NAME.fullmatch(k)]
            if len(gpus) >= 2:
                self._idle_w["gpus"] = None if None in gpus else sum(g or 0.0 for g in gpus)
        self.started_ns = self.clock.now_ns()
        self._ready.set()

    def _first_samples(self, meter_set: MeterSet) -> None:
        """Wait (bounded) until every source has sampled once, so a first window is covered."""
        sources = meter_set.sources()
        longest = max((info.nominal_period_ns for _, info in sources), default=0) / NS_PER_S
        deadline = time.monotonic() + 3 * longest + 2.0
        while time.monotonic() < deadline:
            if all(
                len(meter.snapshot(info.name, self.clock.now_ns() - STALE_NS))
                for meter, info in sources
            ):
                return
            time.sleep(SETTLE_POLL_S)

    def _capture(self, meter_set: MeterSet) -> None:
        """Keep every trace, the notes and the provenance before the meters close."""
        start = (self.idle_window.start_ns if self.idle_window else self.started_ns) or 0
        inputs = meter_set.source_inputs(start - LEAD_NS)
        self._description = meter_set.describe()
        self._problems[:0] = [*meter_set.notes, *meter_set.health_problems()]
        self._final_inputs = inputs

    # -- figures ------------------------------------------------------------------------------

    def _figures_of(self, window: Window) -> tuple[dict[str, SourceEnergy], bool]:
        """Every source's figures over ``window``, and whether they are final."""
        if self._final_inputs is None:
            self._settle(window.end_ns, self.settle_timeout_s)
        snap = self._snapshot_for(window.start_ns, window.end_ns)
        span = Span(window.start_ns, window.end_ns)
        analysis = self.settings.analysis
        out = {s.name: source_figures(s, span, analysis, self._idle_w) for s in snap.sources}
        for name in self.sources:  # a source without a single sample is absent, not dropped
            if name not in out:
                out[name] = no_samples(name, span, simulated=name in self._simulated)
        return out, snap.covers(window.start_ns, window.end_ns)

    def _snapshot_for(self, start_ns: int, end_ns: int) -> Snapshot:
        with self._lock:
            snap = self._snapshot
            if snap is not None and snap.covers(start_ns, end_ns):
                return snap
            final = self._final_inputs is not None
            if self._final_inputs is not None:
                lo, inputs = 0, self._final_inputs
            else:
                ms = self._meter_set
                assert ms is not None  # windows exist only while the meters run
                lo = max(start_ns - LEAD_NS - REUSE_NS, (self.started_ns or 0) - LEAD_NS)
                inputs = ms.source_inputs(lo)
            snap = build_snapshot(
                inputs, lo, now_ns=self.clock.now_ns(), simulated=self._simulated,
                gap_factor=self.settings.analysis.gap_factor, final=final,
            )  # fmt: skip
            self._snapshot = snap
            return snap

    def _settle(self, end_ns: int, timeout_s: float) -> None:
        """Wait (bounded) until every live source has a sample at or after ``end_ns``."""
        ms = self._meter_set
        if ms is None:
            return
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            if all(sampled_past(meter, info, end_ns) for meter, info in ms.sources()):
                return
            if time.monotonic() >= deadline or self._done.is_set():
                return
            time.sleep(SETTLE_POLL_S)


class _WindowSlot:
    """What :meth:`Measurement.window` yields: the ended window, once the block is left."""

    window: Window | None = None
