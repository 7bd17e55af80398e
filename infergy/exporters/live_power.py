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

An energy counter read sparsely (NVML's, every ~1 s) would show a live power that lags by up
to a read interval and steps once a second. :class:`AnchoredLivePower` keeps the last few
seconds of the counter and of its 20-ms samples and, at each poll, anchors them
(:mod:`infergy.core.anchored`) and takes the curve's mean power over the newest ``window_s``:
the samples' resolution at the counter's scale. It is recomputed from raw data each time
rather than fed to a :class:`LiveSource` incrementally, because the curve after the last read
is provisional (extrapolated at the nearest scale) until the next read anchors it. The
source's ``energy_joules_total`` stays on the raw counter: exact at every read, and a
Prometheus counter must never go back, which a revised extrapolation would make it do.

This module also names sources for the exports (:func:`split_source`).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import numpy.typing as npt

from infergy.core.anchored_source import anchor_source
from infergy.core.profile import DEFAULT_GAP_FACTOR
from infergy.core.trace import NS_PER_S, Semantics, Trace

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


class AnchoredLivePower:
    """Live power of a sparsely read counter from its dense samples anchored to it.

    Args:
        counter_period_ns: the counter's nominal update period.
        samples_semantics: the samples' semantics (``instant`` for NVML's buffer).
        samples_period_ns: the samples' period.
        window_s: live power is the curve's mean power over this much of the newest time.
        lookback_s: raw data kept to anchor (several counter intervals before the window).
    """

    def __init__(
        self,
        counter_period_ns: int,
        samples_semantics: Semantics,
        samples_period_ns: int,
        *,
        window_s: float = 1.0,
        lookback_s: float = 8.0,
    ) -> None:
        self.window_ns = round(window_s * NS_PER_S)
        self.lookback_ns = round(max(lookback_s, window_s) * NS_PER_S)
        self._counter = _Recent(Semantics.COUNTER, counter_period_ns)
        self._samples = _Recent(Semantics(samples_semantics), samples_period_ns)

    def add_counter(self, t_ns: npt.NDArray[np.int64], joules: npt.NDArray[np.float64]) -> None:
        """New counter readings (increasing times)."""
        self._counter.add(t_ns, joules, self.lookback_ns)

    def add_samples(self, t_ns: npt.NDArray[np.int64], watts: npt.NDArray[np.float64]) -> None:
        """New power samples (increasing times)."""
        self._samples.add(t_ns, watts, self.lookback_ns)

    def power_w(self) -> float | None:
        """The anchored curve's mean power over the newest window; None when it is unknown."""
        counter, samples = self._counter.trace(), self._samples.trace()
        if counter is None or samples is None:
            return None
        if samples.t_ns[-1] < counter.t_ns[-1] - self.window_ns:
            return None  # the samples stopped: nothing to shape the newest window with
        curve = anchor_source(counter, samples)
        if curve is None:
            return None
        end = int(min(samples.t_ns[-1], curve.trace.t_ns[-1]))
        watts = float(curve.profile.mean_power_w([end - self.window_ns], [end])[0])
        return watts if math.isfinite(watts) else None


class _Recent:
    """The newest samples of one signal, up to a time span."""

    def __init__(self, semantics: Semantics, period_ns: int) -> None:
        self.semantics, self.period_ns = semantics, int(period_ns)
        self._t: deque[int] = deque()
        self._v: deque[float] = deque()

    def add(
        self, t_ns: npt.NDArray[np.int64], values: npt.NDArray[np.float64], keep_ns: int
    ) -> None:
        for t, v in zip(t_ns.tolist(), values.tolist(), strict=True):
            if not self._t or t > self._t[-1]:
                self._t.append(int(t))
                self._v.append(float(v))
        while self._t and self._t[0] < self._t[-1] - keep_ns:
            self._t.popleft()
            self._v.popleft()

    def trace(self) -> Trace | None:
        if len(self._t) < 2:
            return None
        t = np.fromiter(self._t, dtype=np.int64, count=len(self._t))
        v = np.fromiter(self._v, dtype=np.float64, count=len(self._v))
        return Trace(t, v, self.semantics, self.period_ns)
