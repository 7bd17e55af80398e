"""Searches over a sweep plan, as small state machines: ask for the next point, tell its result.

Every search maximizes a score (the objective, signed so that higher is better) that carries
its 1-sigma uncertainty (:class:`Observation`). ``ask()`` returns the next point to measure,
the same one until it is told, and None when the search is done; it may ask for a point already
measured (a close call worth a second measurement: the results are merged). ``tell()`` takes
the result of any grid point, so a resumed sweep rebuilds a search by replaying its stored
results in order: a search is deterministic given its results.

- :class:`GridSearch`: every grid point, in order.
- :class:`GoldenSectionSearch`: the unimodal efficiency-vs-power-limit (or clock) curve on a
  discrete axis. Each probe goes into the larger unmeasured part of the bracket at the golden
  ratio from the best point, so about log_phi(n) probes narrow it. Noise is handled by what
  counts as evidence: the bracket spans every point *not clearly worse* than the best (within
  ``z`` combined sigmas), so a tie never discards a side; a bound only slightly worse than the
  best (within ``confirm_z`` sigmas) and the best itself are measured a second time before the
  search ends. A point flagged as not binding (a limit above the draw) ends the axis: higher
  settings are the same point. It asks each point at most twice and never takes more
  measurements than the axis has points, so it always ends. With a ``tolerance``, it stops
  probing once the bracket's bounds score within that fraction of the best (flat at the
  scale of the noise), measures the best once more, and ends.
- :class:`~infergy.maxq.coordinate.CoordinateSearch` combines them over several axes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from infergy.maxq.errors import SearchError
from infergy.maxq.plan import SweepPoint


@dataclass(frozen=True)
class Observation:
    """One measured point's result (or several measurements of it, merged).

    Attributes:
        score: the objective, signed so that higher is better.
        uncertainty: its 1-sigma uncertainty.
        binding: False when the point's setting did not take effect: a power limit above what
            the GPU draws, a clock lock above the clock the power limit allows. Every higher
            setting on the axis is then the same operating point, so the optimum is not above.
        measurements: how many measurements were merged into it.
    """

    score: float
    uncertainty: float = 0.0
    binding: bool = True
    measurements: int = 1

    def merged(self, other: Observation) -> Observation:
        """Both measurements combined: the inverse-variance weighted mean and its sigma."""
        va, vb = self.uncertainty**2, other.uncertainty**2
        if va + vb > 0:  # weights 1/v, written so that no tiny variance overflows
            score = (self.score * vb + other.score * va) / (va + vb)
            uncertainty = math.sqrt(va * vb / (va + vb))
        else:
            score, uncertainty = (self.score + other.score) / 2, 0.0
        return Observation(
            score=score,
            uncertainty=uncertainty,
            binding=self.binding or other.binding,  # the plateau only on consistent evidence
            measurements=self.measurements + other.measurements,
        )


class Search(Protocol):
    """Ask the next point, tell its result (see the module docstring)."""

    @property
    def grid_size(self) -> int:
        """The number of points of the full grid the search covers."""

    @property
    def measured(self) -> Mapping[SweepPoint, Observation]:
        """Every point told so far."""

    def ask(self) -> SweepPoint | None:
        """The next point to measure, or None when done."""

    def tell(self, point: SweepPoint, observation: Observation) -> None:
        """Record a measured point of the grid."""


def best_point(measured: Mapping[SweepPoint, Observation]) -> tuple[SweepPoint, Observation]:
    """The point with the highest score (the first measured among equals)."""
    if not measured:
        msg = "no point was measured"
        raise SearchError(msg)
    return max(measured.items(), key=lambda kv: kv[1].score)


def record_result(
    measured: dict[SweepPoint, Observation],
    grid: Sequence[SweepPoint] | frozenset[SweepPoint],
    point: SweepPoint,
    observation: Observation,
) -> None:
    """Add a result; a point measured again is merged with what it had."""
    if point not in grid:
        msg = f"{point.describe()} is not a point of this sweep"
        raise SearchError(msg)
    before = measured.get(point)
    measured[point] = observation if before is None else before.merged(observation)


class GridSearch:
    """Every point of a grid, in order (``measured``: a shared record, as for the others)."""

    def __init__(
        self,
        points: Sequence[SweepPoint],
        *,
        measured: dict[SweepPoint, Observation] | None = None,
    ) -> None:
        self._points = tuple(points)
        self._set = frozenset(self._points)
        self._measured: dict[SweepPoint, Observation] = {} if measured is None else measured

    @property
    def points(self) -> tuple[SweepPoint, ...]:
        """The grid, in order."""
        return self._points

    @property
    def grid_size(self) -> int:
        """The grid's size."""
        return len(self._points)

    @property
    def measured(self) -> Mapping[SweepPoint, Observation]:
        """Every point told so far."""
        return self._measured

    def ask(self) -> SweepPoint | None:
        """The first point not yet measured."""
        return next((p for p in self._points if p not in self._measured), None)

    def tell(self, point: SweepPoint, observation: Observation) -> None:
        """Record a point."""
        record_result(self._measured, self._set, point, observation)


GOLDEN = (3 - 5**0.5) / 2
"""0.382: where golden-section search places a probe inside the larger segment."""


class GoldenSectionSearch:
    """The maximum of a unimodal score along ordered points (see the module docstring).

    Args:
        points: the axis, in ascending order of the setting (power limit or clock).
        z: a point is *clearly worse* than the best when it scores more than ``z`` combined
            sigmas below it; only clearly worse points bound the bracket.
        confirm_z: a bound within this many sigmas of the best is measured again.
        max_measurements: measurements of one point at most (1: never measure again).
        measured: a shared record of results (shared by the line searches of a sweep).
        tolerance: stop probing once the bracket is flat (its measured bounds score within
            this fraction of the best), measure the best once more and end (0: never).
    """

    def __init__(
        self,
        points: Sequence[SweepPoint],
        *,
        z: float = 1.0,
        confirm_z: float = 3.0,
        max_measurements: int = 2,
        measured: dict[SweepPoint, Observation] | None = None,
        tolerance: float = 0.0,
    ) -> None:
        if not points:
            msg = "a golden-section search needs at least one point"
            raise SearchError(msg)
        self._points = tuple(points)
        self._set = frozenset(self._points)
        self._z = z
        self._measured: dict[SweepPoint, Observation] = {} if measured is None else measured
        self.confirm_z = confirm_z
        self.max_measurements = max_measurements
        self.tolerance = tolerance

    @property
    def grid_size(self) -> int:
        """The axis' length."""
        return len(self._points)

    @property
    def measured(self) -> Mapping[SweepPoint, Observation]:
        """Every point told so far (of this axis, or shared)."""
        return self._measured

    def _scores(self) -> dict[int, Observation]:
        return {i: self._measured[p] for i, p in enumerate(self._points) if p in self._measured}

    def bracket(self) -> tuple[int, int, int] | None:
        """(left bound, best, right bound) positions, bounds exclusive; None before any result.

        The candidates end at the first point whose setting did not bind (the plateau: every
        higher setting is the same point). The bracket spans every measured point that is not
        clearly worse than the best (noise may order those wrongly); its bounds are the nearest
        measured points outside them (else the axis' ends).
        """
        obs = self._scores()
        if not obs:
            return None
        top = min((i for i, o in obs.items() if not o.binding), default=len(self._points) - 1)
        candidates = {i: o for i, o in obs.items() if i <= top}
        best = max(candidates, key=lambda i: (candidates[i].score, -i))
        b = candidates[best]

        def clearly_worse(i: int) -> bool:
            o = candidates[i]
            return o.score < b.score - self._z * math.hypot(o.uncertainty, b.uncertainty)

        competitive = [i for i in candidates if not clearly_worse(i)]  # the best among them
        low, high = min(competitive), max(competitive)
        left = max((i for i in candidates if i < low), default=-1)
        right = min((i for i in candidates if i > high), default=top + 1)
        return left, best, right

    def ask(self) -> SweepPoint | None:
        """A probe in the bracket, a close call to measure again, or None when done.

        It never takes more measurements than the axis has points: on a short axis that is
        the price of the grid, which then is the better plan anyway.
        """
        bracket = self.bracket()
        if bracket is None:
            return self._points[round(GOLDEN * (len(self._points) - 1))]
        used = sum(self._measured[p].measurements for p in self._points if p in self._measured)
        if used >= len(self._points):
            return None
        left, best, right = bracket
        if self.tolerance > 0 and self._flat(left, best, right):
            b = self._measured[self._points[best]]  # no more probes: confirm the best once
            again = b.measurements < self.max_measurements and b.uncertainty > 0
            return self._points[best] if again else None
        sides = [
            [i for i in range(best + 1, right) if self._points[i] not in self._measured],
            [i for i in range(best - 1, left, -1) if self._points[i] not in self._measured],
        ]
        side = max(sides, key=len)  # the upper side when both are as long
        if side:
            # golden-section placement inside the larger segment, snapped to an unmeasured point
            span = (right - best) if side is sides[0] else (best - left)
            target = max(1, round(GOLDEN * span))
            return self._points[min(side, key=lambda i: abs(abs(i - best) - target))]
        return self._close_call(left, best, right)

    def _flat(self, left: int, best: int, right: int) -> bool:
        """Whether both bracket bounds are within ``tolerance`` of the best (or nothing is left).

        On a smooth unimodal curve no point between such bounds can be much better than the
        best, so more probes buy less than the noise.
        """
        b = self._measured[self._points[best]]
        floor = b.score - self.tolerance * abs(b.score)
        for bound, inside in ((left, range(left + 1, best)), (right, range(best + 1, right))):
            if all(self._points[i] in self._measured for i in inside if 0 <= i < len(self._points)):
                continue
            if not 0 <= bound < len(self._points):
                return False
            if self._measured[self._points[bound]].score < floor:
                return False
        return True

    def _close_call(self, left: int, best: int, right: int) -> SweepPoint | None:
        """A bound that is only a little worse than the best, or the best, measured once."""
        b = self._measured[self._points[best]]
        for i in (left, right):
            if not 0 <= i < len(self._points):
                continue
            o = self._measured[self._points[i]]
            close = o.score >= b.score - self.confirm_z * math.hypot(o.uncertainty, b.uncertainty)
            if o.measurements < self.max_measurements and o.uncertainty > 0 and close:
                return self._points[i]
        if b.measurements < self.max_measurements and b.uncertainty > 0:
            return self._points[best]
        return None

    def tell(self, point: SweepPoint, observation: Observation) -> None:
        """Record a point of the axis."""
        record_result(self._measured, self._set, point, observation)

    def best(self) -> tuple[SweepPoint, Observation]:
        """The best measured point of this axis (the lowest setting among equals)."""
        bracket = self.bracket()
        if bracket is None:
            msg = "no point was measured"
            raise SearchError(msg)
        point = self._points[bracket[1]]
        return point, self._measured[point]


def measurement_count(search: Search) -> int:
    """How many measurements the search used (a point measured twice counts twice)."""
    return sum(o.measurements for o in search.measured.values())


def run_search(
    search: Search,
    measure: Callable[[SweepPoint], Observation],
    *,
    max_measurements: int | None = None,
) -> Search:
    """Drive a search to its end (or ``max_measurements``): ask, measure, tell."""
    limit = 2 * search.grid_size if max_measurements is None else max_measurements
    count = 0
    while count < limit:
        point = search.ask()
        if point is None:
            break
        search.tell(point, measure(point))
        count += 1
    return search
