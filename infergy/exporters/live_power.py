"""Live power and energy of one source, kept incrementally from its new samples.

A scrape must not integrate hours of samples, so each source keeps running totals that every
new sample updates in O(1): energy so far, time covered so far, and the last ~``window_s`` of
(time, energy, covered) points. Live power is then the energy over the newest ``window_s`` of
covered time divided by that time, whatever the source's semantics: for an energy counter it is
the counter's rate; for 20-ms instant samples, their time-weighted mean; for 1-s interval
means, the latest one. The integration rules are those of :mod:`infergy.core.profile` (the one
engine of the analysis), applied one sample at a time:

- ``interval_mean``: a sample covers the time since the previous one, or only its nominal
  period when it is the first or follows a gap longer than ``gap_factor`` periods;
- ``counter``: the increment between two readings covers the interval between them; a
  decrease is a reset and a NaN (GPU lost) an unknown: neither interval is counted;
- ``instant``: the trapezoid between two valid samples at most ``gap_factor`` periods apart.

Uncovered time is left out of both energy and time, so a gap never reads as zero watts.

This module also names sources for the exports (:func:`split_source`).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import numpy.typing as npt

from infergy.core.profile import DEFAULT_GAP_FACTOR
from infergy.core.trace import NS_PER_S, Semantics

PRIMARY_DEVICES: dict[Semantics, str] = {
    Semantics.COUNTER: "counter",
    Semantics.INTERVAL_MEAN: "mean",
    Semantics.INSTANT: "instant",
}
"""The ``device`` label of a source's primary signal, by semantics (see :func:`split_source`)."""


def split_source(meter_source: str, semantics: Semantics) -> tuple[str, str]:
    """The ``(source, device)`` labels of a meter source.

    ``source`` is the contract source name (``gpu0``, ``ac``, ``cpu``, ``sim``), the same key
    as in the result JSON, so live power joins the last-session figures on it. ``device`` says
    which signal of that source the series is: the meter's suffix for a secondary signal
    (``gpu0.samples`` -> ``samples``, ``gpu0.avg`` -> ``avg``, ``cpu.dram`` -> ``dram``), or the
    primary signal's semantics (``counter``, ``mean``, ``instant``). A dashboard selects one
    signal per source with ``device=~"counter|mean|instant"``.

    Examples:
        >>> split_source("gpu0", Semantics.COUNTER)
        ('gpu0', 'counter')
        >>> split_source("gpu0.samples", Semantics.INSTANT)
        ('gpu0', 'samples')
        >>> split_source("ac", Semantics.INTERVAL_MEAN)
        ('ac', 'mean')
    """
    source, _, suffix = meter_source.partition(".")
    return source, suffix or PRIMARY_DEVICES[Semantics(semantics)]


class LiveSource:
    """Running energy and windowed power of one source (not thread-safe: one feeder).

    Args:
        semantics: how the source's values integrate.
        nominal_period_ns: the source's update period (first interval, gap threshold).
        window_s: live power is averaged over at least this much covered time when available.
        gap_factor: intervals longer than this many nominal periods are gaps.
    """

    def __init__(
        self,
        semantics: Semantics,
        nominal_period_ns: int,
        *,
        window_s: float = 1.0,
        gap_factor: float = DEFAULT_GAP_FACTOR,
    ) -> None:
        self.semantics = Semantics(semantics)
        self.nominal_period_ns = int(nominal_period_ns)
        self.window_ns = round(window_s * NS_PER_S)
        self._max_gap_ns = gap_factor * self.nominal_period_ns
        self.energy_j = 0.0
        """Energy over the covered time since the first sample, J."""
        self.covered_ns = 0
        """Time covered by valid intervals, ns."""
        self.resets = 0
        """Counter decreases seen (driver reloads)."""
        self.last_t_ns: int | None = None
        """Timestamp of the newest sample (valid or not)."""
        self.last_valid_t_ns: int | None = None
        """Timestamp of the newest sample that was a reading (NaN, a missed or bad sample, is
        not): a source that only reports invalid samples is stale, not live."""
        self._last_v = math.nan
        # (end of covered time, energy_j, covered_ns) at segment ends; the oldest entry is the
        # newest point at least one window before the last one (the window's start).
        self._points: deque[tuple[int, float, int]] = deque()

    def add(self, t_ns: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
        """Take new samples (increasing times, all after :attr:`last_t_ns`)."""
        for t, v in zip(t_ns.tolist(), values.tolist(), strict=True):
            self._add_one(int(t), float(v))
        self._prune()

    def _add_one(self, t: int, v: float) -> None:
        prev_t, prev_v = self.last_t_ns, self._last_v
        if prev_t is not None and t <= prev_t:
            return  # already seen (the feeder's cursor overlaps by design)
        self.last_t_ns, self._last_v = t, v
        if math.isfinite(v):
            self.last_valid_t_ns = t
        if self.semantics is Semantics.INTERVAL_MEAN:
            if math.isfinite(v):
                gap = prev_t is None or t - prev_t > self._max_gap_ns
                span = self.nominal_period_ns if gap or prev_t is None else t - prev_t
                self._segment(t - span, t, v * span / NS_PER_S)
        elif prev_t is None:
            return  # a counter or an instant needs two readings for an interval
        elif self.semantics is Semantics.COUNTER:
            increment = v - prev_v
            if increment < 0:
                self.resets += 1
            elif math.isfinite(increment):
                self._segment(prev_t, t, increment)
        elif math.isfinite(v) and math.isfinite(prev_v) and t - prev_t <= self._max_gap_ns:
            self._segment(prev_t, t, 0.5 * (v + prev_v) * (t - prev_t) / NS_PER_S)

    def _segment(self, start_ns: int, end_ns: int, energy_j: float) -> None:
        if not self._points or self._points[-1][0] < start_ns:
            self._points.append((start_ns, self.energy_j, self.covered_ns))
        self.energy_j += energy_j
        self.covered_ns += end_ns - start_ns
        self._points.append((end_ns, self.energy_j, self.covered_ns))

    def _prune(self) -> None:
        points = self._points
        if not points:
            return
        start = points[-1][0] - self.window_ns
        while len(points) > 1 and points[1][0] <= start:
            points.popleft()

    @property
    def has_energy(self) -> bool:
        """True once some time is covered (before that, energy is unknown, not zero)."""
        return self.covered_ns > 0

    def power_w(self) -> float | None:
        """Mean power over the newest ~window of covered time; None while nothing is covered."""
        if len(self._points) < 2:
            return None
        _t0, e0, c0 = self._points[0]
        _t1, e1, c1 = self._points[-1]
        return (e1 - e0) / ((c1 - c0) / NS_PER_S) if c1 > c0 else None
