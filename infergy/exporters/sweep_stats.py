"""MaxQ sweep counters and the last sweep's figures for the live exports, from sweep records.

A finished sweep is known to the exporters by its record (docs/maxq.md). :class:`SweepStats`
counts sweeps by status and keeps the latest sweep's headline: the recommendation's gain and
its interval, the objective at the default and the recommended settings, the recommended
power limit and batch size, how many measurements the search took of how large a grid.
Absent figures stay absent (a sweep with no recommendation exports no gain, never zero).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SWEEP_STATUSES = ("ok", "failed", "aborted")
"""Sweep statuses whose counters exist from the start."""


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class LastSweep:
    """The headline of the latest finished sweep (None: absent).

    Attributes:
        objective: its objective's name (a label).
        simulated: ``true`` or ``false`` (a label: simulated hardware says so).
        gain: the relative gain over the default settings (0.29: 29 %).
        gain_low: the 95 % interval's lower end.
        gain_high: its upper end.
        significant: 1 when the interval excludes zero, else 0.
        default_value: the objective at the default settings.
        recommended_value: the objective at the recommended settings.
        recommended_power_limit_w: the recommended power limit, if the sweep set one.
        recommended_batch_size: the recommended batch, if the sweep chose one.
        measurements: points measured (baselines excluded).
        grid_points: the full grid's size.
        timestamp_s: when the record was last written, Unix seconds.
    """

    objective: str
    simulated: str
    gain: float | None = None
    gain_low: float | None = None
    gain_high: float | None = None
    significant: float | None = None
    default_value: float | None = None
    recommended_value: float | None = None
    recommended_power_limit_w: float | None = None
    recommended_batch_size: float | None = None
    measurements: float | None = None
    grid_points: float | None = None
    timestamp_s: float | None = None


def last_sweep_of(record: Mapping[str, Any]) -> LastSweep:
    """The headline of one sweep record (missing parts are simply absent)."""
    rec = _mapping(record.get("recommendation"))
    gain = _mapping(rec.get("gain"))
    point = _mapping(rec.get("point"))
    search = _mapping(record.get("search"))
    baseline = _mapping(record.get("baseline"))
    significant = gain.get("significant")
    updated = _number(record.get("updated_unix_ns"))
    return LastSweep(
        objective=str(_mapping(record.get("objective")).get("name") or "unknown"),
        simulated="true" if record.get("simulated") else "false",
        gain=_number(gain.get("relative")),
        gain_low=_number(gain.get("low")),
        gain_high=_number(gain.get("high")),
        significant=None if not isinstance(significant, bool) else float(significant),
        default_value=_number(rec.get("baseline_value")) or _number(baseline.get("objective")),
        recommended_value=_number(rec.get("value")),
        recommended_power_limit_w=_number(point.get("power_limit_w")),
        recommended_batch_size=_number(point.get("batch_size")),
        measurements=_number(search.get("measurements")),
        grid_points=_number(search.get("grid_points")),
        timestamp_s=None if updated is None else updated / 1e9,
    )


class SweepStats:
    """Sweep counters and the last sweep (not thread-safe: the owner locks)."""

    def __init__(self) -> None:
        self.by_status: Counter[str] = Counter(dict.fromkeys(SWEEP_STATUSES, 0))
        self.last: LastSweep | None = None

    def finished(self, record: Mapping[str, Any]) -> None:
        """A sweep ended with ``record``: count it and show its figures."""
        self.by_status[str(record.get("status") or "unknown")] += 1
        self.remember(record)

    def remember(self, record: Mapping[str, Any]) -> None:
        """Show a record's figures without counting it (at the service's start)."""
        self.last = last_sweep_of(record)
