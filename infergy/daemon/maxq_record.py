"""What a sweep concludes, as the record states it: merged points, fronts, the recommendation.

Pure functions over the sweep's :class:`~infergy.daemon.maxq_points.PointEntry` list. A point
measured twice is merged (:func:`~infergy.maxq.recommend.combine_baselines`: the mean, its
spread counted as uncertainty), so the recommendation never picks the luckier of two readings
of one setting. Only usable points (status ``ok``, LoadGen VALID) that meet the constraints
are compared; the default settings are the start and end baselines merged. The plan's
expected measurement count for ``smart`` is the search run on a noiseless unimodal stand-in
(:func:`expected_measurements`): a guide for ``--dry-run``, not a promise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from infergy.daemon.maxq_points import PointEntry, usable
from infergy.errors import InfergyError
from infergy.maxq.coordinate import make_search
from infergy.maxq.pareto import latency_energy_front, throughput_power_front
from infergy.maxq.plan import AUTO, Axes, SweepPoint
from infergy.maxq.points import MeasuredPoint
from infergy.maxq.recommend import Constraints, Recommendation, combine_baselines, recommend
from infergy.maxq.search import Observation, measurement_count, run_search

RECORD_KIND = "infergy-maxq-sweep"
RECORD_SCHEMA = 1


def point_json(point: SweepPoint | None) -> dict[str, Any] | None:
    """A sweep point as JSON (None: the default settings)."""
    return None if point is None else asdict(point)


def merged(entries: Sequence[PointEntry]) -> list[tuple[MeasuredPoint, list[str]]]:
    """Usable points, each setting once (repeats merged), with the run ids behind each."""
    by_point: dict[SweepPoint, tuple[MeasuredPoint, list[str]]] = {}
    for entry in usable(entries):
        assert entry.measured is not None
        key = entry.measured.point
        if key in by_point:
            before, runs = by_point[key]
            by_point[key] = (combine_baselines(before, entry.measured), [*runs, entry.run_id])
        else:
            by_point[key] = (entry.measured, [entry.run_id])
    return list(by_point.values())


def baseline_of(entries: Sequence[PointEntry]) -> MeasuredPoint | None:
    """The default settings: the usable start and end baselines merged (one if only one)."""
    ends = [e.measured for e in usable(entries) if e.role.startswith("baseline") and e.measured]
    if not ends:
        return None
    first, last = ends[0], ends[-1]
    assert first is not None and last is not None
    return first if len(ends) == 1 else combine_baselines(first, last)


def conclude(
    entries: Sequence[PointEntry],
    *,
    objective_name: str,
    constraints: Constraints,
) -> tuple[Recommendation | None, dict[str, Any], list[str]]:
    """The recommendation, the Pareto fronts and the problems, from every entry so far."""
    problems: list[str] = []
    points = merged([e for e in entries if e.role == "point"])
    baseline = baseline_of(entries)
    fronts: dict[str, Any] = {"throughput_power": [], "latency_energy": []}
    candidates = [m for m, _ in points] + ([] if baseline is None else [baseline])
    runs = {m.point: r for m, r in points}
    fronts["throughput_power"] = [_front_item(m, runs) for m in throughput_power_front(candidates)]
    fronts["latency_energy"] = [
        _front_item(m, runs)
        for m in latency_energy_front(candidates, constraints.latency_percentile)
    ]
    if baseline is None:
        problems.append("no usable measurement of the default settings: no recommendation")
        return None, fronts, problems
    try:
        rec = recommend(
            [m for m, _ in points],
            baseline,
            objective_name=objective_name,
            constraints=constraints,
        )
    except InfergyError as err:
        problems.append(f"no recommendation: {err}")
        return None, fronts, problems
    return rec, fronts, problems


def _front_item(m: MeasuredPoint, runs: dict[SweepPoint, list[str]]) -> dict[str, Any]:
    return {
        "point": point_json(m.point),
        "run_ids": runs.get(m.point, []),
        "samples_per_second": m.samples_per_second,
        "average_power_w": m.average_power_w,
        "joules_per_query": m.joules_per_query[0],
        "latency_ms": {f"p{q:g}": v for q, v in m.latency_ms.items()},
    }


def recommendation_json(rec: Recommendation | None) -> Any:
    """The recommendation as the record stores it (None: none could be made)."""
    if rec is None:
        return None
    is_default = rec.best is rec.baseline
    g = rec.gain
    return {
        "point": point_json(rec.best.point),
        "is_default": is_default,
        "objective": rec.objective,
        "unit": rec.unit,
        "value": rec.value,
        "value_uncertainty": rec.value_uncertainty,
        "baseline_value": rec.baseline_value,
        "baseline_uncertainty": rec.baseline_uncertainty,
        "gain": {
            "relative": g.relative,
            "low": g.low,
            "high": g.high,
            "significant": g.significant,
        },
        "samples_per_second": rec.best.samples_per_second,
        "average_power_w": rec.best.average_power_w,
        "excluded": [{"point": point_json(p.point), "why": why} for p, why in rec.excluded],
        "summary": rec.summary,
        "simulated": rec.simulated,
    }


def _stand_in(axes: Axes, point: SweepPoint) -> Observation:
    """A noiseless unimodal score: peak at 40 % of the ordered axes, rising with the batch."""
    score = 1.0
    for value, values in (
        (point.power_limit_w, axes.power_limits_w),
        (point.sm_clock_mhz, axes.sm_clocks_mhz),
    ):
        if value is not None and len(values) > 1:
            x = list(values).index(value) / (len(values) - 1)
            score -= 0.3 * (x - 0.4) ** 2
    batches = [b for b in axes.batch_sizes if b != AUTO]
    if point.batch_size not in (None, AUTO) and batches:
        knee = max(1.0, float(max(int(b) for b in batches)) / 8)
        score *= 1 - 0.5 * math.exp(-float(point.batch_size) / knee)
    if point.precision is not None and axes.precisions:
        score *= 1 - 0.1 * axes.precisions.index(point.precision)
    return Observation(score, 0.003 * score)


def expected_measurements(axes: Axes, strategy: str) -> int:
    """How many measurements a search takes: the grid's size, or ``smart`` on the stand-in."""
    if strategy == "grid":
        return axes.size
    search = make_search(axes, "smart")
    run_search(search, lambda p: _stand_in(axes, p))
    return measurement_count(search)
