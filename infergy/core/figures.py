"""Result entries built from computed figures: performance, efficiency, offsets, problems.

Pure helpers of :func:`infergy.core.analysis.analyze`; they shape numbers into the schema-1
result (ARCHITECTURE.md, "Result"), with ``None`` wherever a figure does not apply.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from infergy.core.clock import OffsetEstimate
from infergy.core.energy import WindowEnergy
from infergy.core.inputs import AnalysisOptions, Workload
from infergy.core.trace import F64, NS_PER_S, Window


def offset_dict(off: OffsetEstimate | None) -> dict[str, Any] | None:
    """The ``clock_offset`` entry of a source: how its offset was found, or None."""
    if off is None:
        return None
    return {
        "method": off.method,
        "accepted": off.accepted,
        "offset_ms": off.offset_ms,
        "uncertainty_ms": off.uncertainty_ns / 1e6,
        "peak_correlation": off.peak_correlation,
        "reason": off.reason,
    }


def percentiles(values: F64, scale: float = 1.0) -> dict[str, float] | None:
    """p50/p90/p99 of ``values`` times ``scale``; None for no values."""
    if values.size == 0:
        return None
    p = np.percentile(values, [50, 90, 99]) * scale
    return {"p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2])}


def performance(workload: Workload, window: Window) -> dict[str, Any]:
    """The ``performance`` entry: counts, throughput over the window, latency in ms.

    ``queries`` are LoadGen's (an Offline run has one); ``batches`` the rows of an Offline
    query log (None otherwise).
    """
    if workload.queries is not None:
        latency = percentiles(workload.queries.latency_ns.astype(np.float64), 1e-6)
    elif workload.latency_ns:
        latency = {k: float(v) / 1e6 for k, v in workload.latency_ns.items()}
    else:
        latency = None
    samples = workload.sample_count
    return {
        "queries": workload.query_count,
        "samples": samples,
        "batches": workload.batches,
        "samples_per_second": samples / window.duration_s if samples is not None else None,
        "latency_ms": latency,
    }


def efficiency(
    *,
    energy_j: float | None,
    mlperf_w: float | None,
    idle_w: float | None,
    samples_per_second: float | None,
    workload: Workload,
    window: Window,
) -> dict[str, Any]:
    """The ``efficiency`` entry of one source (None where a figure does not apply).

    Time-weighted: J per query of the result's scenario and J per sample (they differ for
    Offline, MultiStream and inferred MultiStream), samples/s per W. MLPerf's, from its mean
    ``mlperf_w``: mJ per query (SingleStream/MultiStream) and its samples (or tokens) per J.
    """
    queries = workload.energy_queries
    samples = workload.sample_count
    duration_s = window.duration_s
    avg_w = energy_j / duration_s if energy_j is not None else None
    dyn_j = energy_j - idle_w * duration_s if energy_j is not None and idle_w is not None else None
    rule = workload.rule
    lg_queries = workload.loadgen.query_count if workload.loadgen is not None else None
    power_metric = rule.power_metric(mlperf_w, duration_s, lg_queries or workload.query_count)
    mlperf_eff = rule.efficiency(mlperf_w, power_metric)
    sps = samples_per_second
    return {
        "samples_per_second_per_watt": sps / avg_w if sps is not None and avg_w else None,
        "joules_per_query": _per(energy_j, queries),
        "joules_per_sample": _per(energy_j, samples),
        "millijoules_per_query_mlperf": power_metric if rule.power_unit == "millijoules" else None,
        "samples_per_joule_mlperf": mlperf_eff if rule.efficiency_unit == "samples/J" else None,
        "tokens_per_joule_mlperf": mlperf_eff if rule.efficiency_unit == "tokens/J" else None,
        "dynamic_joules_per_query": _per(dyn_j, queries),
        "dynamic_joules_per_sample": _per(dyn_j, samples),
        "per_query_joules": None,
        "per_batch_joules": None,
    }


def _per(joules: float | None, count: float | None) -> float | None:
    return joules / count if joules is not None and count else None


def source_problems(
    name: str, we: WindowEnergy, window: Window, opts: AnalysisOptions
) -> list[str]:
    """What is wrong with one source over the window, one line each."""
    if we.covered_s <= 0:
        return [f"{name}: no valid sample interval inside the window"]
    out = []
    if we.gaps_ns:
        total_s = sum(b - a for a, b in we.gaps_ns) / NS_PER_S
        a, b = we.gaps_ns[0]
        out.append(
            f"{name}: {len(we.gaps_ns)} gap(s) totalling {total_s:.3f} s inside the window "
            f"(first at +{(a - window.start_ns) / NS_PER_S:.3f} s, {(b - a) / NS_PER_S:.3f} s long)"
        )
    if we.coverage < opts.degraded_coverage:
        out.append(f"{name}: coverage {we.coverage:.3f} is below {opts.degraded_coverage:g}")
    if we.invalid_samples:
        out.append(f"{name}: {we.invalid_samples} invalid sample(s) inside the window")
    if we.resets:
        out.append(f"{name}: energy counter reset {we.resets} time(s) inside the window")
    return out
