"""One measured run in, one schema-1 result out: the figures of every source, side by side.

``analyze`` is pure: it takes traces on their own clocks (with any known offsets), the query log
or LoadGen's counts, and the window; it aligns, integrates, applies MLPerf's rules beside the
time-weighted figures, apportions energy to queries, and returns the result object of
ARCHITECTURE.md ("Result") with every problem it found listed rather than hidden.

An energy counter given with its dense power samples (``SourceInput.samples``) is anchored to
them first, and every figure of that source, the GPU sum and the per-query split use the
anchored curve (:mod:`infergy.core.anchored_source`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from infergy.core import figures
from infergy.core.anchored import AnchoredCurve
from infergy.core.anchored_source import (
    AnchoredFigures,
    anchor_source,
    anchored_figures,
    edge_read_interval_ns,
    flag_samples,
    read_interval_s,
)
from infergy.core.attribution import InFlight
from infergy.core.clock import OffsetEstimate, offset_by_xcorr
from infergy.core.combine import sum_traces
from infergy.core.energy import idle_watts, mlperf_mean_watts, window_energy
from infergy.core.gen_logs import GenerationLog
from infergy.core.generative import generative_block
from infergy.core.inputs import AnalysisOptions, SourceInput, Workload
from infergy.core.mlperf import SUBMISSION_MIN_DURATION_MS
from infergy.core.phase_split import SourceSplit
from infergy.core.profile import PowerProfile
from infergy.core.trace import (
    NS_PER_S,
    Semantics,
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
    """The result object (JSON-ready) and the host-clock traces it was computed from.

    ``traces`` are the sources as recorded (an anchored counter as its raw reads, beside its
    samples) plus the GPU sum; ``anchored`` the curves the anchored sources were reported
    from (rebuilt from the raw traces by :func:`infergy.core.anchored_source.anchored_curves`).
    """

    result: dict[str, Any]
    traces: dict[str, Trace] = field(default_factory=dict)
    anchored: dict[str, AnchoredCurve] = field(default_factory=dict)

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
    flag_samples(power, ctx.curves)
    ctx.notes.extend(_apportioning_note(ctx, power))
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
        "mlperf": _mlperf_entry(workload),
        "provenance": dict(identity.get("provenance", {})),
    }
    ctx.notes.extend(f"note: {n}" for n in workload.rule.notes)
    if workload.generation is not None:
        result["generative"] = _generative(ctx, power, workload.generation)
    return Analysis(result, ctx.traces | ctx.raw, dict(ctx.curves))


def _generative(ctx: _Context, power: Mapping[str, Any], log: GenerationLog) -> dict[str, Any]:
    """The ``generative`` entry: prefill and decode apart, per source with energy."""
    sources = {
        name: SourceSplit(ctx.profiles[name], p.get("uncertainty_joules"),
                          _resolution_ns(ctx, power, name))
        for name, p in power.items()
        if p.get("energy_joules") is not None
    }  # fmt: skip
    return generative_block(sources, ctx.window, log)


def _mlperf_entry(workload: Workload) -> dict[str, Any]:
    """How MLPerf's rule applied: the scenario, its units, LoadGen's performance and verdict."""
    out = workload.rule.to_json()
    lg = workload.loadgen
    min_ms = lg.number("effective_min_duration_ms") if lg is not None else None
    out["validity"] = lg.validity if lg is not None else None
    out["min_duration_ms"] = min_ms
    out["submittable_duration"] = None if min_ms is None else min_ms >= SUBMISSION_MIN_DURATION_MS
    return out


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
    curves: dict[str, AnchoredCurve] = field(default_factory=dict)
    """Anchored sources' curves (their ``traces`` entry is the curve's trace)."""
    raw: dict[str, Trace] = field(default_factory=dict)
    """Anchored sources' raw counters on the host clock."""
    anchor_samples: dict[str, Trace] = field(default_factory=dict)
    """Anchored sources' samples on the host clock."""

    @property
    def gpus(self) -> list[SourceInput]:
        return [s for s in self.sources if _GPU_NAME.fullmatch(s.name)]

    def build_traces(self) -> None:
        gap = self.opts.gap_factor
        for s in self.sources:
            self.traces[s.name], self.offsets[s.name] = _apply_offset(s)
            self.profiles[s.name] = PowerProfile.of(self.traces[s.name], gap)
            if s.samples is not None:
                self.anchor(s)
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

    def anchor(self, s: SourceInput) -> None:
        """Replace a counter's trace and profile by its anchored curve's (same offset)."""
        assert s.samples is not None
        off = self.offsets[s.name]
        shift = off.offset_ns if off is not None and off.accepted else 0
        samples = s.samples.shifted(shift) if shift else s.samples
        curve = anchor_source(self.traces[s.name], samples, self.opts.gap_factor)
        if curve is None:
            self.notes.append(f"note: {s.name}: its samples cannot anchor it: the counter alone")
            return
        self.raw[s.name], self.anchor_samples[s.name] = self.traces[s.name], samples
        self.curves[s.name] = curve
        self.traces[s.name], self.profiles[s.name] = curve.trace, curve.profile

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
        anchored: AnchoredFigures | None = None
        if name in self.curves:
            anchored = anchored_figures(
                name,
                self.curves[name],
                self.raw[name],
                self.anchor_samples[name],
                window,
                offset_uncertainty_ns=applied.uncertainty_ns if applied else None,
            )
            unc = anchored.uncertainty
            counts = anchored.reads  # the counter's own reads, not the curve's knots
        else:
            if trace.semantics is Semantics.COUNTER:  # read less often than it updates?
                period = max(
                    period or trace.nominal_period_ns, edge_read_interval_ns(trace, window)
                )
            unc = energy_uncertainty(
                prof,
                window,
                update_period_ns=period,
                offset_uncertainty_ns=applied.uncertainty_ns if applied else None,
            )
            counts = we
        has = we.covered_s > 0
        notes = figures.source_problems(name, we, window, self.opts)
        if counts.resets and not we.resets:
            notes.append(f"{name}: energy counter reset {counts.resets} time(s) inside the window")
        notes += anchored.notes if anchored is not None and has else []
        degraded = we.coverage < self.opts.degraded_coverage
        mlperf_w = self.mlperf_mean(name, notes)
        energy_j = we.energy_j if has else None
        power = {
            "kind": self.kinds[name],
            "simulated": self.simulated[name],
            "semantics": trace.semantics.value,
            "energy_joules": energy_j,
            "average_watts": we.average_w,
            "mlperf_average_watts": mlperf_w,
            "idle_watts": self.idle_w.get(name),
            "samples": counts.samples,
            "invalid_samples": counts.invalid_samples,
            "resets": counts.resets,
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
        if anchored is not None:
            power["anchoring"] = anchored.entry if has else None
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
            per_row = "per_query_joules" if self.workload.rows_are_queries else "per_batch_joules"
            eff[per_row] = figures.percentiles(qe.per_query_j)
            eff["unattributed_joules"] = qe.unattributed_j
        return power, eff, notes, degraded

    def mlperf_mean(self, name: str, notes: list[str]) -> float | None:
        """MLPerf's mean W of one source, from its samples as the checker reads them.

        The checker reads the sample lines as written: unshifted, repeated timestamps and
        overrange values kept. Where that differs from the time-weighted view, a note says so.
        """
        src = next((s for s in self.sources if s.name == name), None)
        if src is None or src.mlperf_samples is None:
            trace = src.trace if src is not None else self.traces[name]  # unshifted
            if trace.semantics is Semantics.COUNTER:
                return None
            t_ns, watts = trace.t_ns, trace.values
        else:
            t_ns, watts = src.mlperf_samples
        m = mlperf_mean_watts(t_ns, watts, self.window)
        off = self.offsets.get(name)
        if src is not None and off is not None and off.accepted and off.offset_ns:
            notes.append(
                f"note: {name}: MLPerf's mean uses the samples' own timestamps, as its checker "
                f"does; the time-weighted figures apply the {off.offset_ns / 1e6:+.1f} ms offset"
            )
        if m.repeated:
            notes.append(
                f"note: {name}: {m.repeated} samples inside the window share a timestamp: "
                "MLPerf's mean counts each, the time-weighted figures the last"
            )
        if m.overrange:
            notes.append(
                f"{name}: {m.overrange} overrange sample(s) (9.9E+37/inf) inside the window: "
                "MLPerf's checker keeps them in its mean, the time-weighted figures treat them "
                "as gaps"
            )
        return m.mean_w


def _apply_offset(s: SourceInput) -> tuple[Trace, OffsetEstimate | None]:
    if s.offset is not None and s.offset.accepted and s.offset.offset_ns:
        return s.trace.shifted(s.offset.offset_ns), s.offset
    return s.trace, s.offset


def _resolution_ns(ctx: _Context, power: Mapping[str, Any], name: str) -> int:
    """A source's time resolution for the per-query split.

    An anchored curve resolves the samples' period where their shape was kept, the counter's
    read interval where it was mostly noise; a plain counter its read interval (at least its
    update period); the GPU sum the coarsest of its GPUs'.
    """
    if name == "gpus":
        return max((_resolution_ns(ctx, power, g.name) for g in ctx.gpus), default=0)
    block = (power.get(name) or {}).get("anchoring")
    if name in ctx.curves and block:
        return round(float(block["effective_resolution_ms"]) * 1e6)
    trace = ctx.traces[name]
    if trace.semantics is Semantics.COUNTER:
        reads_s = read_interval_s(trace, ctx.window)
        if reads_s is not None:
            return max(trace.nominal_period_ns, round(reads_s * NS_PER_S))
    return trace.nominal_period_ns


def _apportioning_note(ctx: _Context, power: Mapping[str, Any]) -> list[str]:
    """One note naming the sources whose per-query split is coarser than the queries."""
    if ctx.flight is None:
        return []
    latency_ns = ctx.flight.median_latency_ns
    periods_ns = {n: _resolution_ns(ctx, power, n) for n in ctx.traces}
    coarse = {n: p for n, p in periods_ns.items() if p > 2 * latency_ns}
    if not coarse:
        return []
    periods = sorted(set(coarse.values()))
    span = f"{periods[0] / 1e6:g}" + (f"-{periods[-1] / 1e6:g}" if len(periods) > 1 else "")
    return [
        f"note: per-query energy of {', '.join(coarse)} is an apportioning estimate "
        f"(resolution {span} ms vs median query latency {latency_ns / 1e6:.3g} ms)"
    ]
