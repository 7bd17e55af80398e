"""One measured run in, one schema-1 result out: the figures of every source, side by side.

``analyze`` is pure: it takes traces on their own clocks (with any known offsets), the query log
or LoadGen's counts, and the window; it aligns, integrates, applies MLPerf's rules beside the
time-weighted figures, apportions energy to queries, and returns the result object of
ARCHITECTURE.md ("Result") with every problem it found listed rather than hidden.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from infergy.core import figures
from infergy.core.attribution import InFlight
from infergy.core.clock import OffsetEstimate, offset_by_xcorr
from infergy.core.combine import sum_traces
from infergy.core.energy import idle_watts, mlperf_average_watts, window_energy
from infergy.core.inputs import AnalysisOptions, SourceInput, Workload
from infergy.core.profile import PowerProfile
from infergy.core.trace import (
    NS_PER_S,
    Trace,
    Window,
)
from infergy.core.uncertainty import energy_uncertainty
from infergy.errors import AnalysisError

SCHEMA_VERSION = 1
_GPU_NAME = re.compile(r"gpu\d+")
_MAX_GAPS_LISTED = 20


@dataclass(frozen=True)
class Analysis:
    """The result object (JSON-ready) and the host-clock traces it was computed from."""

    result: dict[str, Any]
    traces: dict[str, Trace] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``ok`` or ``degraded``."""
        return str(self.result["status"])


def analyze(
    sources: Sequence[SourceInput],
    workload: Workload,
    window: Window,
    *,
    identity: Mapping[str, Any],
    options: AnalysisOptions | None = None,
    problems: Sequence[str] = (),
) -> Analysis:
    """Compute the schema-1 result of one measured run.

    Args:
        sources: the power sources (names unique).
        workload: the queries or LoadGen's counts.
        window: the measured window on the host clock.
        identity: ``run_id`` and descriptive keys (backend, model, precision, batch_size, devices,
            host, provenance) copied into the result.
        options: thresholds; defaults match MEASUREMENT.md.
        problems: problems found before the analysis (parsers), carried into the result.

    Raises:
        AnalysisError: no source has a single valid sample interval inside the window.
    """
    opts = options or AnalysisOptions()
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        msg = f"source names must be unique, got {names}"
        raise AnalysisError(msg)
    ctx = _Context(sources, workload, window, opts, list(problems))
    ctx.build_traces()
    if opts.align_auto:
        ctx.align()
    if opts.idle_window is not None:
        ctx.measure_idle(opts.idle_window)
    perf = figures.performance(workload, window)
    # Sources are independent and numpy releases the GIL: use the machine's cores.
    with ThreadPoolExecutor(max_workers=min(len(ctx.traces), os.cpu_count() or 1)) as pool:
        per_source = list(pool.map(lambda n: ctx.figures(n, perf), ctx.traces))
    power: dict[str, Any] = {}
    efficiency: dict[str, Any] = {}
    for name, (p, e, notes, degraded) in zip(ctx.traces, per_source, strict=True):
        power[name], efficiency[name] = p, e
        ctx.notes.extend(notes)
        ctx.degraded |= degraded
    ctx.notes.extend(_apportioning_note(ctx))
    if not any(p["energy_joules"] is not None for p in power.values()):
        msg = "no power source has a valid sample inside the measured window"
        raise AnalysisError(
            msg, hint="check that the traces and the query log / LoadGen log are from the same run"
        )
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": identity["run_id"],
        "status": "degraded" if ctx.degraded else "ok",
        "problems": ctx.notes,
        "scenario": workload.scenario.value,
        "backend": identity.get("backend"),
        "model": identity.get("model"),
        "precision": identity.get("precision"),
        "batch_size": identity.get("batch_size"),
        "devices": list(identity.get("devices", [g.name for g in ctx.gpus])),
        "host": identity.get("host"),
        "window": {
            "start_unix_ns": window.start_ns,
            "end_unix_ns": window.end_ns,
            "duration_s": window.duration_s,
        },
        "performance": perf,
        "power": power,
        "efficiency": efficiency,
        "provenance": dict(identity.get("provenance", {})),
    }
    return Analysis(result, ctx.traces)


@dataclass
class _Context:
    """Working state of one analysis: traces on the host clock, profiles, offsets, notes."""

    sources: Sequence[SourceInput]
    workload: Workload
    window: Window
    opts: AnalysisOptions
    notes: list[str]
    degraded: bool = False
    traces: dict[str, Trace] = field(default_factory=dict)
    profiles: dict[str, PowerProfile] = field(default_factory=dict)
    offsets: dict[str, OffsetEstimate | None] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    simulated: dict[str, bool] = field(default_factory=dict)
    idle_w: dict[str, float | None] = field(default_factory=dict)
    flight: InFlight | None = None

    @property
    def gpus(self) -> list[SourceInput]:
        return [s for s in self.sources if _GPU_NAME.fullmatch(s.name)]

    def build_traces(self) -> None:
        gap = self.opts.gap_factor
        for s in self.sources:
            self.traces[s.name], self.offsets[s.name] = _apply_offset(s)
            self.profiles[s.name] = PowerProfile.of(self.traces[s.name], gap)
            self.kinds[s.name] = s.kind
            self.simulated[s.name] = bool(s.simulated)
            self.idle_w[s.name] = s.idle_w
        gpus = [g.name for g in self.gpus]
        if len(gpus) >= 2:
            self.traces["gpus"] = sum_traces(
                [self.traces[g] for g in gpus],
                gap_factor=gap,
                profiles=[self.profiles[g] for g in gpus],
            )
            self.profiles["gpus"] = PowerProfile.of(self.traces["gpus"], gap)
            self.kinds["gpus"] = "nvml"
            self.simulated["gpus"] = any(self.simulated[g] for g in gpus)  # one part is enough
            self.offsets["gpus"] = None
            idle = [self.idle_w[g] for g in gpus]
            self.idle_w["gpus"] = None if None in idle else float(sum(i or 0.0 for i in idle))
        if self.workload.queries is not None:
            self.flight = InFlight.of(self.workload.queries)

    def align(self) -> None:
        """Estimate and apply the offset of every non-NVML source without a given one."""
        gpus = self.gpus
        ref = "gpus" if "gpus" in self.traces else (gpus[0].name if gpus else None)
        if ref is None:
            msg = "--align auto needs a GPU source (gpu0...) to align the others against"
            hint = "give a GPU trace with --power gpu0=PATH, or use --clock-offset-ms"
            raise AnalysisError(msg, hint=hint)
        for s in self.sources:
            if s.kind == "nvml" or s.offset is not None:
                continue
            est = offset_by_xcorr(
                self.profiles[ref], self.profiles[s.name], max_lag_s=self.opts.align_max_lag_s
            )
            self.offsets[s.name] = est
            if est.accepted:
                self.traces[s.name] = s.trace.shifted(est.offset_ns)
                self.profiles[s.name] = PowerProfile.of(self.traces[s.name], self.opts.gap_factor)
            else:
                self.notes.append(f"{s.name}: clock alignment failed ({est.reason}); not applied")
                self.degraded = True

    def measure_idle(self, idle: Window) -> None:
        """Idle baseline of every source without one, from its samples in ``idle``."""
        for name, prof in self.profiles.items():
            if self.idle_w.get(name) is not None:
                continue
            self.idle_w[name] = idle_watts(self.traces[name], idle, profile=prof)
            if self.idle_w[name] is None:
                self.notes.append(f"{name}: no valid sample in the idle window: no idle baseline")

    def figures(
        self, name: str, perf: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], list[str], bool]:
        """The ``power`` and ``efficiency`` entries of one source, its notes, and degradation.

        Reads the context only, so sources can be computed concurrently.
        """
        trace, prof, window = self.traces[name], self.profiles[name], self.window
        we = window_energy(trace, window, gap_factor=self.opts.gap_factor, profile=prof)
        off = self.offsets.get(name)
        applied = off if off is not None and off.accepted else None
        period = next((s.update_period_ns for s in self.sources if s.name == name), None)
        unc = energy_uncertainty(
            prof,
            window,
            update_period_ns=period,
            offset_uncertainty_ns=applied.uncertainty_ns if applied else None,
        )
        has = we.covered_s > 0
        notes = figures.source_problems(name, we, window, self.opts)
        degraded = we.coverage < self.opts.degraded_coverage
        mlperf_w = mlperf_average_watts(trace, window)
        energy_j = we.energy_j if has else None
        power = {
            "kind": self.kinds[name],
            "simulated": self.simulated[name],
            "semantics": trace.semantics.value,
            "energy_joules": energy_j,
            "average_watts": we.average_w,
            "mlperf_average_watts": mlperf_w,
            "idle_watts": self.idle_w.get(name),
            "samples": we.samples,
            "invalid_samples": we.invalid_samples,
            "resets": we.resets,
            "coverage": we.coverage,
            "gaps": [
                {"start_unix_ns": a, "duration_s": (b - a) / NS_PER_S}
                for a, b in we.gaps_ns[:_MAX_GAPS_LISTED]
            ],
            "uncertainty_joules": unc.total_j if has else None,
            "uncertainty_parts_joules": unc.as_dict() if has else None,
            "clock_offset_ms": applied.offset_ms if applied else None,
            "clock_offset": figures.offset_dict(off),
        }
        eff = figures.efficiency(
            energy_j=energy_j,
            mlperf_w=mlperf_w,
            idle_w=self.idle_w.get(name),
            samples_per_second=perf["samples_per_second"],
            workload=self.workload,
            window=window,
        )
        if self.flight is not None and has:
            qe = self.flight.apportion(prof, window)
            eff["per_query_joules"] = figures.percentiles(qe.per_query_j)
            eff["unattributed_joules"] = qe.unattributed_j
        return power, eff, notes, degraded


def _apply_offset(s: SourceInput) -> tuple[Trace, OffsetEstimate | None]:
    if s.offset is not None and s.offset.accepted and s.offset.offset_ns:
        return s.trace.shifted(s.offset.offset_ns), s.offset
    return s.trace, s.offset


def _apportioning_note(ctx: _Context) -> list[str]:
    """One note naming the sources whose per-query split is coarser than the queries."""
    if ctx.flight is None:
        return []
    latency_ns = ctx.flight.median_latency_ns
    coarse = {
        n: t.nominal_period_ns
        for n, t in ctx.traces.items()
        if t.nominal_period_ns > 2 * latency_ns
    }
    if not coarse:
        return []
    periods = sorted(set(coarse.values()))
    span = f"{periods[0] / 1e6:g}" + (f"-{periods[-1] / 1e6:g}" if len(periods) > 1 else "")
    return [
        f"note: per-query energy of {', '.join(coarse)} is an apportioning estimate "
        f"(update period {span} ms vs median query latency {latency_ns / 1e6:.3g} ms)"
    ]
