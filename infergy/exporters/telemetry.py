"""What the live exports read: one immutable :class:`Telemetry` snapshot, and who builds it.

The Prometheus collector (and any other live exporter) depends only on the narrow
:class:`TelemetrySource` Protocol: ``telemetry()`` returns a frozen snapshot of plain values,
cheap to take at every scrape. :class:`LiveTelemetry` is the service's implementation:

- it pulls new samples from every :class:`~infergy.meters.base.Meter` in :meth:`poll` (the
  service runs :meth:`LiveTelemetry.run` in its TaskGroup; each poll reads only the samples
  after the last one seen) and keeps running energy and windowed power per source
  (:class:`~infergy.exporters.live_power.LiveSource`), so a scrape never touches a trace;
  an energy counter with a ``.samples`` sibling (NVML's, read sparsely) shows the power of
  its samples anchored to it over the last few seconds
  (:class:`~infergy.exporters.live_power.AnchoredLivePower`), its energy total stays the
  raw counter's;
- it reads GPU context (power limit, clocks, temperature, clock-event reasons) from any meter
  that also satisfies :class:`GpuContextSource` (the NVML meter does, through its public
  ``gpus`` and ``context()``);
- the session orchestrator calls :meth:`LiveTelemetry.session_started` and
  :meth:`LiveTelemetry.session_finished` with the result object.

Thread-safety: polls, session events and ``telemetry()`` may come from different threads
(the event loop, a worker thread, a WSGI scrape thread); one lock guards what they share and
is held only to swap or copy small objects.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import platform
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from infergy import __version__
from infergy.core.clock import SessionClock
from infergy.core.inputs import SAMPLES_SUFFIX
from infergy.core.trace import NS_PER_S, Semantics
from infergy.errors import InfergyError
from infergy.exporters.live_power import AnchoredLivePower, LiveSource, split_source
from infergy.exporters.session_stats import LastSession, SessionStats
from infergy.exporters.sweep_stats import LastSweep, SweepStats
from infergy.meters.base import Meter, MeterHealth, SourceInfo
from infergy.meters.gpu import CLOCK_EVENT_REASONS, GpuContext, GpuIdentity, clock_event_names

logger = logging.getLogger(__name__)

_MHZ = 1e6


@dataclass(frozen=True)
class SourceTelemetry:
    """One signal of one power source, live.

    Attributes:
        source: contract source name (``gpu0``, ``ac``, ``cpu``, ``sim``).
        device: the signal (``counter|mean|instant`` or ``samples|avg|dram``; see
            :func:`~infergy.exporters.live_power.split_source`).
        meter_source: the meter's own name for it (``gpu0.samples``).
        kind: ``nvml | analyzer | rapl | sim | replay``.
        semantics: ``instant | interval_mean | counter``.
        simulated: True when it is not a measurement.
        up: the meter says the source works and its newest sample is fresh.
        power_w: mean power over the last ~window; None when unknown or stale.
        energy_j: energy since the telemetry started; None until some time is covered.
    """

    source: str
    device: str
    meter_source: str
    kind: str
    semantics: str
    simulated: bool
    up: bool
    power_w: float | None
    energy_j: float | None


@dataclass(frozen=True)
class GpuTelemetry:
    """The latest context of one GPU (None: not reported by this GPU, or stale).

    Attributes:
        gpu: its source name (``gpu0``).
        power_limit_w: the enforced power limit.
        sm_clock_hz: SM clock.
        memory_clock_hz: memory clock.
        temperature_c: die temperature.
        clock_events: active or not, per clock-event reason (every known reason, plus unknown
            bits as ``0x...``); empty when the GPU does not report them.
    """

    gpu: str
    power_limit_w: float | None = None
    sm_clock_hz: float | None = None
    memory_clock_hz: float | None = None
    temperature_c: float | None = None
    clock_events: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Telemetry:
    """Everything the live exports show, at one moment.

    Attributes:
        version: infergy's version.
        python_version: the interpreter's version.
        sources: every signal of every power source.
        meter_errors: error counts by (source, kind), summed over the source's signals.
        gpus: GPU context, per GPU.
        sessions_running: sessions in progress.
        sessions_by_status: finished sessions by result status.
        queries_by_scenario: LoadGen queries of finished sessions by scenario (Offline: 1
            a session).
        samples_by_scenario: samples of finished sessions by scenario.
        last_sessions: latest figures per (scenario, model, backend).
        sweeps_by_status: finished MaxQ sweeps by record status.
        last_sweep: the latest MaxQ sweep's headline, if any.
    """

    version: str
    python_version: str
    sources: tuple[SourceTelemetry, ...] = ()
    meter_errors: Mapping[tuple[str, str], int] = field(default_factory=dict)
    gpus: tuple[GpuTelemetry, ...] = ()
    sessions_running: int = 0
    sessions_by_status: Mapping[str, int] = field(default_factory=dict)
    queries_by_scenario: Mapping[str, int] = field(default_factory=dict)
    samples_by_scenario: Mapping[str, int] = field(default_factory=dict)
    last_sessions: tuple[LastSession, ...] = ()
    sweeps_by_status: Mapping[str, int] = field(default_factory=dict)
    last_sweep: LastSweep | None = None


@runtime_checkable
class TelemetrySource(Protocol):
    """Anything a live exporter can read: one cheap, thread-safe, immutable snapshot."""

    def telemetry(self) -> Telemetry:
        """The current snapshot."""
        ...


@runtime_checkable
class GpuContextSource(Protocol):
    """A meter that also reports GPU context (:class:`~infergy.meters.nvml.NvmlMeter` does)."""

    @property
    def gpus(self) -> Mapping[str, GpuIdentity]:
        """GPU identities by source name (``gpu0``...)."""
        ...

    def context(self, gpu: str) -> GpuContext | None:
        """The latest context of one GPU, or None before the first read."""
        ...


@runtime_checkable
class IncrementalMeter(Protocol):
    """Optional fast path: a meter that returns only the samples after a time.

    :meth:`~infergy.meters.base.Meter.snapshot` copies a source's whole ring buffer before
    slicing it, which costs milliseconds per source once buffers hold hours of samples. A
    meter that implements this is polled through it instead.
    """

    def samples_after(
        self, source: str, after_ns: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """(t_ns, values) of the samples of ``source`` with ``t_ns > after_ns``, oldest first."""
        ...


@dataclass
class _Tracked:
    """A meter source being followed."""

    meter: Meter
    info: SourceInfo
    labels: tuple[str, str]
    live: LiveSource
    cursor_ns: int
    health: MeterHealth | None = None
    simulated: bool = False
    anchored: AnchoredLivePower | None = None
    """For a counter with a ``.samples`` sibling: live power from both, anchored."""


class LiveTelemetry:
    """Live power, GPU context and session figures for the exporters; a :class:`TelemetrySource`.

    Args:
        meters: the meters to follow (more with :meth:`add_meter`).
        clock: the session clock the meters stamp samples with.
        window_s: live power is the mean over about this much of the newest covered time.
        stale_s: a source (or GPU context) without a valid sample for longer than this, or
            than 3 of its nominal periods, shows no power and is not up.
        max_last_sessions: (scenario, model, backend) combinations kept for the gauges.
        simulated: meter source names whose readings are simulated although their meter does
            not say so (the emulated analyzer behind a real PTD client).
    """

    def __init__(
        self,
        meters: Sequence[Meter] = (),
        *,
        clock: SessionClock,
        window_s: float = 1.0,
        stale_s: float = 5.0,
        max_last_sessions: int = 32,
        simulated: Collection[str] = (),
    ) -> None:
        self._clock = clock
        self._simulated = frozenset(simulated)
        self.window_s = window_s
        self.stale_s = stale_s
        self.started_ns = clock.now_ns()
        self._meters: list[Meter] = []
        self._tracked: dict[tuple[int, str], _Tracked] = {}
        self._lock = threading.Lock()  # guards the published tuples and the session stats
        self._poll_lock = threading.Lock()  # one poll at a time (they mutate _tracked)
        self._sessions = SessionStats(max_last_sessions)
        self._sweeps = SweepStats()
        self._published: tuple[tuple[_Published, ...], dict[tuple[str, str], int]] = ((), {})
        self._gpus: tuple[tuple[int, GpuTelemetry], ...] = ()
        for meter in meters:
            self.add_meter(meter)

    def add_meter(self, meter: Meter) -> None:
        """Follow one more meter from its next poll on (its samples from now on count)."""
        with self._poll_lock:
            self._meters.append(meter)

    # -- feeding --------------------------------------------------------------------------------

    def poll(self) -> None:
        """Read every meter's new samples, health and GPU context (blocking, short)."""
        with self._poll_lock:
            published: list[_Published] = []
            errors: dict[tuple[str, str], int] = {}
            gpus: list[tuple[int, GpuTelemetry]] = []
            for meter in self._meters:
                try:
                    self._poll_meter(meter, published, errors, gpus)
                except InfergyError as err:  # one broken meter must not blank the others
                    logger.warning("live telemetry: meter %s: %s", meter.name, err)
            with self._lock:
                self._published = (tuple(published), errors)
                self._gpus = tuple(gpus)

    def _poll_meter(
        self,
        meter: Meter,
        published: list[_Published],
        errors: dict[tuple[str, str], int],
        gpus: list[tuple[int, GpuTelemetry]],
    ) -> None:
        health = meter.health()
        seen: set[int] = set()
        infos = {info.name: info for info in meter.describe()}
        new = {}
        for info in infos.values():
            tracked = self._track(meter, info, infos)
            tracked.health = health.get(info.name)
            new[info.name] = (tracked, self._ingest(tracked))
        for name, (tracked, (t, v)) in new.items():
            sibling = new.get(name + SAMPLES_SUFFIX)
            if tracked.anchored is not None and sibling is not None:
                tracked.anchored.add_counter(t, v)
                tracked.anchored.add_samples(*sibling[1])
        for tracked, _ in new.values():
            published.append(_Published.of(tracked, self._fresh_for_ns(tracked)))
            h = tracked.health
            if h is not None and id(h) not in seen:  # signals may share one health object
                seen.add(id(h))
                for kind, count in h.errors.items():
                    key = (tracked.labels[0], kind)
                    errors[key] = errors.get(key, 0) + count
        if isinstance(meter, GpuContextSource):
            for name in meter.gpus:
                context = meter.context(name)
                if context is not None:
                    gpus.append((context.t_ns, _gpu_telemetry(name, context)))

    def _track(self, meter: Meter, info: SourceInfo, infos: Mapping[str, SourceInfo]) -> _Tracked:
        key = (id(meter), info.name)
        tracked = self._tracked.get(key)
        if tracked is not None:
            # What a source is can be learnt after it started: a PTD server's Identify names
            # the analyzer and says whether it is simulated. Labels stay as first published.
            tracked.info = info
            tracked.simulated = tracked.simulated or info.simulated
        else:
            labels = split_source(info.name, info.semantics)
            if any(t.labels == labels for t in self._tracked.values()):
                labels = (labels[0], info.name)  # two meters with one name: keep both series
            live = LiveSource(info.semantics, info.nominal_period_ns, window_s=self.window_s)
            simulated = info.simulated or info.name in self._simulated
            tracked = _Tracked(
                meter, info, labels, live, cursor_ns=self.started_ns, simulated=simulated
            )
            samples = infos.get(info.name + SAMPLES_SUFFIX)
            if info.semantics is Semantics.COUNTER and samples is not None:
                tracked.anchored = AnchoredLivePower(
                    info.nominal_period_ns,
                    samples.semantics,
                    samples.nominal_period_ns,
                    window_s=self.window_s,
                )
            self._tracked[key] = tracked
        return tracked

    def _ingest(self, tracked: _Tracked) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        meter, name = tracked.meter, tracked.info.name
        after = tracked.live.last_t_ns
        after = tracked.cursor_ns - 1 if after is None else after
        if isinstance(meter, IncrementalMeter):
            t, v = meter.samples_after(name, after)
        else:
            trace = meter.snapshot(name, start_ns=after + 1)
            t, v = trace.t_ns, trace.values
        if t.size:
            tracked.live.add(t, v)
        return t, v

    def _fresh_for_ns(self, tracked: _Tracked) -> int:
        return max(round(self.stale_s * NS_PER_S), 3 * tracked.info.nominal_period_ns)

    async def run(self, interval_s: float = 1.0) -> None:
        """Poll every ``interval_s`` until cancelled (each poll in a worker thread)."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.to_thread(self.poll)
            await asyncio.sleep(max(0.0, interval_s - (loop.time() - started)))

    # -- session events -------------------------------------------------------------------------

    def session_started(self) -> None:
        """A measurement session started (``infergy_session_running`` counts it)."""
        with self._lock:
            self._sessions.started()

    def session_finished(self, result: Mapping[str, Any]) -> None:
        """A session ended with its result object (ARCHITECTURE.md, schema_version 1)."""
        with self._lock:
            self._sessions.finished(result)

    def restore_last_session(self, result: Mapping[str, Any]) -> None:
        """Show a stored result in the last-session gauges without counting it (at start)."""
        with self._lock:
            self._sessions.remember(result)

    def sweep_finished(self, record: Mapping[str, Any]) -> None:
        """A MaxQ sweep ended with its record (docs/maxq.md)."""
        with self._lock:
            self._sweeps.finished(record)

    def restore_last_sweep(self, record: Mapping[str, Any]) -> None:
        """Show a stored sweep in the last-sweep gauges without counting it (at start)."""
        with self._lock:
            self._sweeps.remember(record)

    # -- reading --------------------------------------------------------------------------------

    def telemetry(self) -> Telemetry:
        """The current snapshot (stale power is dropped here, so a stuck poller shows)."""
        now_ns = self._clock.now_ns()
        with self._lock:
            published, errors = self._published
            gpus = self._gpus
            stats = self._sessions
            running, by_status = stats.running, dict(stats.by_status)
            queries, last = dict(stats.queries_by_scenario), stats.last_sessions
            samples = dict(stats.samples_by_scenario)
            sweeps, last_sweep = dict(self._sweeps.by_status), self._sweeps.last
        fresh_ns = round(self.stale_s * NS_PER_S)
        return Telemetry(
            version=__version__,
            python_version=platform.python_version(),
            sources=tuple(p.at(now_ns) for p in published),
            meter_errors=errors,
            gpus=tuple(g for t_ns, g in gpus if now_ns - t_ns <= fresh_ns),
            sessions_running=running,
            sessions_by_status=by_status,
            queries_by_scenario=queries,
            samples_by_scenario=samples,
            last_sessions=last,
            sweeps_by_status=sweeps,
            last_sweep=last_sweep,
        )


@dataclass(frozen=True)
class _Published:
    """A source's figures as of the last poll, with what is needed to judge staleness."""

    template: SourceTelemetry
    last_t_ns: int | None
    fresh_for_ns: int

    @classmethod
    def of(cls, tracked: _Tracked, fresh_for_ns: int) -> _Published:
        info, live, h = tracked.info, tracked.live, tracked.health
        return cls(
            SourceTelemetry(
                source=tracked.labels[0],
                device=tracked.labels[1],
                meter_source=info.name,
                kind=info.kind,
                semantics=str(info.semantics),
                simulated=tracked.simulated,
                up=h is not None and h.up,
                power_w=_power_w(tracked),
                energy_j=live.energy_j if live.has_energy else None,
            ),
            live.last_valid_t_ns,  # invalid samples (an unplugged analyzer's) keep nothing live
            fresh_for_ns,
        )

    def at(self, now_ns: int) -> SourceTelemetry:
        t = self.template
        fresh = self.last_t_ns is not None and now_ns - self.last_t_ns <= self.fresh_for_ns
        if fresh and t.up:
            return t
        return dataclasses.replace(t, up=False, power_w=None)  # down or stale: no old value


def _power_w(tracked: _Tracked) -> float | None:
    """Live power: anchored where a counter has samples (else its rate), else the source's."""
    anchored = tracked.anchored.power_w() if tracked.anchored is not None else None
    return anchored if anchored is not None else tracked.live.power_w()


def _gpu_telemetry(name: str, c: GpuContext) -> GpuTelemetry:
    events: dict[str, bool] = {}
    if c.clock_event_reasons is not None:
        active = set(clock_event_names(c.clock_event_reasons))
        events = {reason: reason in active for reason in CLOCK_EVENT_REASONS.values()}
        events.update({r: True for r in active if r not in events})  # unknown bits, as 0x..
    return GpuTelemetry(
        gpu=name,
        power_limit_w=c.power_limit_w,
        sm_clock_hz=None if c.sm_clock_mhz is None else c.sm_clock_mhz * _MHZ,
        memory_clock_hz=None if c.memory_clock_mhz is None else c.memory_clock_mhz * _MHZ,
        temperature_c=c.temperature_c,
        clock_events=events,
    )
