"""A search over several axes: screen the others, line-search the limit, check the neighbours.

:class:`CoordinateSearch` exploits that a sweep's axes interact weakly: batch size and
precision change the efficiency by large factors at any power limit, the limit's optimum moves
little with them. So it measures the other axes (batch sizes, precisions, memory clocks; SM
clocks when the limit is swept) as a grid at a reference limit, runs a
:class:`~infergy.maxq.search.GoldenSectionSearch` over the limit (or the SM clock) at the best
of them, then measures that best's neighbours on each other axis at the found limit; if one
wins, one more line search runs for it. :func:`make_search` picks a strategy by name.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal

from infergy.maxq.plan import Axes, SweepPoint
from infergy.maxq.search import (
    GoldenSectionSearch,
    GridSearch,
    Observation,
    Search,
    best_point,
    record_result,
)

_CATEGORICAL = ("sm_clock_mhz", "mem_clock_mhz", "batch_size", "precision")
_AXIS_FIELD = {
    "power_limit_w": "power_limits_w",
    "sm_clock_mhz": "sm_clocks_mhz",
    "mem_clock_mhz": "mem_clocks_mhz",
    "batch_size": "batch_sizes",
    "precision": "precisions",
}


class CoordinateSearch:
    """The other axes at a reference limit, then a golden-section search over the limit.

    The ordered axis is the power limit when swept, else the SM clock; the others (SM clocks
    when the limit is swept, memory clocks, batch sizes, precisions) are screened as a grid.

    Args:
        axes: the sweep.
        reference: the ordered axis' value for the screening grid (default: its highest, the
            nearest to the default settings).
        z: the line searches' "clearly worse" threshold, in sigmas.
        max_measurements: measurements of one point at most (1: never measure again).
        screen_z: screened combinations within this many sigmas of the best are contenders,
            each line-searched.
        rounds: at most this many line searches (contenders, then a winning neighbour).
        tolerance: a sweep of the ordered axis alone (every other axis one value) stops once
            its bracket is flat within this fraction of the best
            (:class:`~infergy.maxq.search.GoldenSectionSearch`). With other axes it is not
            used: contenders' line searches cut short picked a 5 % worse point on the T4 in
            bench/maxq_search.py.
    """

    def __init__(
        self,
        axes: Axes,
        *,
        reference: float | None = None,
        z: float = 1.0,
        max_measurements: int = 2,
        screen_z: float = 2.0,
        rounds: int = 4,
        tolerance: float = 0.01,
    ) -> None:
        self._grid = frozenset(axes.grid())
        self._size = axes.size
        self._z = z
        self._max_measurements = max_measurements
        self._rounds = rounds
        self._screen_z = screen_z
        self._measured: dict[SweepPoint, Observation] = {}
        self._ordered = "power_limit_w" if axes.power_limits_w else "sm_clock_mhz"
        values: tuple[Any, ...] = getattr(axes, _AXIS_FIELD[self._ordered])
        self._values: tuple[Any, ...] = values or (None,)
        self._reference = max(values) if reference is None and values else reference
        others = [a for a in _CATEGORICAL if a != self._ordered]
        self._axes: dict[str, tuple[Any, ...]] = {
            name: tuple(getattr(axes, _AXIS_FIELD[name])) or (None,) for name in others
        }
        self._combos = [
            dict(zip(self._axes, combo, strict=True))
            for combo in itertools.product(*self._axes.values())
        ]
        self._tolerance = tolerance if len(self._combos) == 1 else 0.0
        self._screen = GridSearch(
            [self._point(self._reference, c) for c in self._combos], measured=self._measured
        )
        self._searched: list[dict[str, Any]] = []
        self._line_search: GoldenSectionSearch | None = None
        self._checked = False

    @property
    def grid_size(self) -> int:
        """The full grid's size."""
        return self._size

    @property
    def line_tolerance(self) -> float:
        """The flat-bracket tolerance its line searches use (0 when other axes are swept)."""
        return self._tolerance

    @property
    def measured(self) -> Mapping[SweepPoint, Observation]:
        """Every point told so far."""
        return self._measured

    def _point(self, value: Any, combo: dict[str, Any]) -> SweepPoint:
        fields: dict[str, Any] = {self._ordered: value, **combo}
        return SweepPoint(**fields)

    def _line(self, combo: dict[str, Any]) -> GoldenSectionSearch:
        points = [self._point(v, combo) for v in self._values]
        return GoldenSectionSearch(
            points, z=self._z, max_measurements=self._max_measurements, measured=self._measured,
            tolerance=self._tolerance,
        )  # fmt: skip

    def _combo_of(self, point: SweepPoint) -> dict[str, Any]:
        return {name: getattr(point, name) for name in self._axes}

    def _neighbours(self, point: SweepPoint) -> list[SweepPoint]:
        """The best point's neighbours along each other axis (precisions: all others)."""
        out = []
        for name, values in self._axes.items():
            i = values.index(getattr(point, name))
            near = range(len(values)) if name == "precision" else (i - 1, i + 1)
            out += [replace(point, **{name: values[j]}) for j in near if 0 <= j < len(values)]
        return [p for p in out if p != point]

    def ask(self) -> SweepPoint | None:
        """Screen, line-search the contenders, check the best's neighbours, maybe once more."""
        pending = self._screen.ask()
        if pending is not None:
            return pending
        while True:
            if self._line_search is not None:
                pending = self._line_search.ask()
                if pending is not None:
                    return pending
                self._line_search, self._checked = None, False
            best, _ = best_point(self._measured)
            combo = next(
                (c for c in [self._combo_of(best), *self._contenders()] if c not in self._searched),
                None,
            )
            if combo is not None and len(self._searched) < self._rounds:
                self._searched.append(combo)
                self._line_search = self._line(combo)
                continue
            if not self._checked:
                pending = next((p for p in self._neighbours(best) if p not in self._measured), None)
                if pending is not None:
                    return pending
                self._checked = True
                continue
            return None

    def _contenders(self) -> list[dict[str, Any]]:
        """Screened combinations within ``screen_z`` sigmas of the best screened, best first.

        At the reference limit several batch sizes can be as good within the noise while
        their optimal limits differ: each gets its own line search (up to ``rounds``).
        """
        screened = [(p, self._measured[p]) for p in self._screen.points]
        top = max(o.score for _, o in screened)
        top_u = max(o.uncertainty for _, o in screened if o.score == top)
        close = [
            (p, o)
            for p, o in screened
            if o.score >= top - self._screen_z * math.hypot(o.uncertainty, top_u)
        ]
        return [self._combo_of(p) for p, _ in sorted(close, key=lambda po: -po[1].score)]

    def tell(self, point: SweepPoint, observation: Observation) -> None:
        """Record a point of the grid."""
        record_result(self._measured, self._grid, point, observation)


def make_search(
    axes: Axes, strategy: Literal["grid", "smart"] = "smart", *, max_measurements: int = 2
) -> Search:
    """The full grid, or the coordinate search (``smart``) over the axes."""
    if strategy == "grid":
        return GridSearch(axes.grid())
    return CoordinateSearch(axes, max_measurements=max_measurements)
