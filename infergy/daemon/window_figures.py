"""The figures of a measurement window: source traces prepared once, figures per window.

Split from :mod:`infergy.daemon.measurement`. A :class:`Snapshot` holds every source's trace on
the host clock with its :class:`~infergy.core.profile.PowerProfile` (and the ``gpus`` sum when
there are two GPUs or more), built once and shared by every window it covers;
:func:`source_figures` is the core's window figures for one source -- the same functions
``infergy run`` uses for a run (window energy, coverage, gaps, uncertainty parts, problems).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from infergy.config.settings import AnalysisSettings
from infergy.core import figures as core_figures
from infergy.core.combine import sum_traces
from infergy.core.energy import window_energy
from infergy.core.inputs import AnalysisOptions, SourceInput
from infergy.core.profile import PowerProfile
from infergy.core.trace import NS_PER_S, Trace
from infergy.core.trace import Window as Span
from infergy.core.uncertainty import energy_uncertainty
from infergy.daemon.windows import SourceEnergy
from infergy.errors import InfergyError
from infergy.exporters.telemetry import IncrementalMeter
from infergy.meters.base import Meter, SourceInfo

LEAD_NS = 5 * NS_PER_S
"""A window's traces start this long before it (an interval sample straddling its start)."""
STALE_NS = 5 * NS_PER_S
"""A source silent this long (and 3 of its periods) is not waited for."""
GPU_NAME = re.compile(r"gpu\d+")


@dataclass(frozen=True)
class SourceTrace:
    """One source ready for window figures: its trace on the host clock and its profile."""

    name: str
    kind: str
    simulated: bool
    trace: Trace
    profile: PowerProfile
    period_ns: int | None
    offset_uncertainty_ns: int | None
    stale: bool
    """Silent at snapshot time: windows do not wait for it to cover their end."""


@dataclass(frozen=True)
class Snapshot:
    """Every source's trace from ``lo_ns`` on; ``final`` once the measurement has ended."""

    lo_ns: int
    sources: tuple[SourceTrace, ...]
    final: bool

    def covers(self, start_ns: int, end_ns: int) -> bool:
        """Whether figures over [start, end] from this snapshot are final."""
        if self.lo_ns > start_ns - LEAD_NS:
            return False
        return self.final or all(
            s.stale or (len(s.trace) > 0 and int(s.trace.t_ns[-1]) >= end_ns) for s in self.sources
        )


def build_snapshot(
    inputs: Sequence[SourceInput],
    lo_ns: int,
    *,
    now_ns: int,
    simulated: Collection[str],
    gap_factor: float,
    final: bool,
) -> Snapshot:
    """Traces on the host clock (offsets applied), their profiles, and the ``gpus`` sum."""
    out: list[SourceTrace] = []
    for s in inputs:
        trace = s.trace
        if s.offset is not None and s.offset.accepted and s.offset.offset_ns:
            trace = trace.shifted(s.offset.offset_ns)
        unc_ns = s.offset.uncertainty_ns if s.offset is not None and s.offset.accepted else None
        last = int(trace.t_ns[-1]) if len(trace) else None
        stale = last is None or now_ns - last > max(STALE_NS, 3 * trace.nominal_period_ns)
        sim = s.name in simulated or s.kind == "sim"
        profile = PowerProfile.of(trace, gap_factor)
        period = s.update_period_ns
        out.append(SourceTrace(s.name, s.kind, sim, trace, profile, period, unc_ns, stale))
    gpus = [s for s in out if GPU_NAME.fullmatch(s.name)]
    if len(gpus) >= 2:
        total = sum_traces(
            [g.trace for g in gpus], gap_factor=gap_factor, profiles=[g.profile for g in gpus]
        )
        sim = any(g.simulated for g in gpus)
        stale = any(g.stale for g in gpus)
        profile = PowerProfile.of(total, gap_factor)
        out.append(SourceTrace("gpus", "nvml", sim, total, profile, None, None, stale))
    return Snapshot(lo_ns, tuple(out), final)


def source_figures(
    s: SourceTrace, span: Span, analysis: AnalysisSettings, idle_w: Mapping[str, float | None]
) -> SourceEnergy:
    """One source's figures over ``span`` (the core's window energy and uncertainty)."""
    we = window_energy(s.trace, span, gap_factor=analysis.gap_factor, profile=s.profile)
    has = we.covered_s > 0
    unc = energy_uncertainty(
        s.profile, span, update_period_ns=s.period_ns, offset_uncertainty_ns=s.offset_uncertainty_ns
    )
    opts = AnalysisOptions(
        gap_factor=analysis.gap_factor, degraded_coverage=analysis.degraded_coverage
    )
    return SourceEnergy(
        source=s.name, kind=s.kind, simulated=s.simulated,
        energy_j=we.energy_j if has else None, mean_power_w=we.average_w,
        duration_s=span.duration_s, coverage=we.coverage,
        uncertainty_j=unc.total_j if has else None, samples=we.samples,
        idle_w=idle_w.get(s.name),
        problems=tuple(core_figures.source_problems(s.name, we, span, opts)),
    )  # fmt: skip


def no_samples(name: str, span: Span, *, simulated: bool) -> SourceEnergy:
    """The figures of a source that has not sampled at all: absent, never zero."""
    return SourceEnergy(
        source=name, kind="unknown", simulated=simulated, energy_j=None, mean_power_w=None,
        duration_s=span.duration_s, coverage=0.0, uncertainty_j=None, samples=0,
        problems=(f"{name}: no sample was recorded",),
    )  # fmt: skip


def sampled_past(meter: Meter, info: SourceInfo, end_ns: int) -> bool:
    """Whether ``info``'s source has sampled at or after ``end_ns`` (or is silent anyway)."""
    fresh_ns = max(STALE_NS, 3 * info.nominal_period_ns)
    try:
        if isinstance(meter, IncrementalMeter):
            after, _ = meter.samples_after(info.name, end_ns - 1)
            if after.size:
                return True
            recent, _ = meter.samples_after(info.name, end_ns - fresh_ns)
            return recent.size == 0  # silent for a while: do not wait for it
        trace = meter.snapshot(info.name, end_ns - fresh_ns)
    except InfergyError:
        return True
    return len(trace) == 0 or int(trace.t_ns[-1]) >= end_ns
