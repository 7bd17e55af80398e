"""Pareto fronts over measured sweep points: the settings no other setting beats on every count.

Two fronts are reported: throughput vs power (maximize samples/s, minimize watts) and latency
vs energy per query (minimize both, at a latency percentile). :func:`pareto_front` is the
general rule over any number of criteria. Fronts are computed on the point estimates; points
whose difference is within their uncertainties may swap places between two sweeps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from infergy.maxq.points import MeasuredPoint


@dataclass(frozen=True)
class Criterion:
    """One axis of a front: a value of a point (None: the point lacks it) and its direction."""

    value: Callable[[MeasuredPoint], float | None]
    maximize: bool


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` is as good as ``b`` everywhere and better somewhere (higher is better)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True)
    )


def pareto_front(
    points: Sequence[MeasuredPoint], criteria: Sequence[Criterion]
) -> list[MeasuredPoint]:
    """The non-dominated points, in input order; points lacking a criterion's value are left out.

    Equal points do not dominate each other: both stay on the front.
    """
    rows: list[tuple[MeasuredPoint, list[float]]] = []
    for p in points:
        signed = []
        for c in criteria:
            value = c.value(p)
            if value is None:
                break
            signed.append(value if c.maximize else -value)
        else:
            rows.append((p, signed))
    return [p for p, v in rows if not any(_dominates(w, v) for _, w in rows)]


def throughput_power_front(points: Sequence[MeasuredPoint]) -> list[MeasuredPoint]:
    """Maximize samples/s, minimize average watts; sorted by power."""
    front = pareto_front(
        points,
        [
            Criterion(lambda p: p.samples_per_second, True),
            Criterion(lambda p: p.average_power_w, False),
        ],
    )
    return sorted(front, key=lambda p: p.average_power_w)


def latency_energy_front(
    points: Sequence[MeasuredPoint], percentile: float = 99.0
) -> list[MeasuredPoint]:
    """Minimize the latency at ``percentile`` and the joules per query; sorted by latency."""
    front = pareto_front(
        points,
        [
            Criterion(lambda p: p.latency_at_ms(percentile), False),
            Criterion(lambda p: p.joules_per_query[0], False),
        ],
    )
    return sorted(front, key=lambda p: p.latency_ms[percentile])
