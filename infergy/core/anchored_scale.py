"""The anchoring scale: counter energy over samples energy, and whether the samples drift.

Each anchored interval (see :mod:`infergy.core.anchored`) gives a pair: the counter's delta
``y_i`` and the samples' own energy ``x_i`` over the same interval. Their ratio of sums is the
factor the samples are off by: 1 where the sensor agrees with the counter (the H200: within
0.1-0.2 %), 1/0.97 for a sensor reading 3 % low. Its uncertainty is the ratio estimator's
standard error, ``sqrt(n / (n - 1) * sum (y_i - R x_i)^2) / sum x_i``, which takes the
interval-to-interval scatter as it is (shape errors of 20-ms samples on a bursty load, a counter
stamped at its reads rather than its updates), plus the counter's 1-mJ quantization. A part is
flagged when the scale is farther from 1 than both that uncertainty (times a coverage factor)
and a tolerance: ``results`` and ``doctor`` can then say "these samples are not to be trusted
alone" without crying wolf over a 0.1 % disagreement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from infergy.core.trace import F64
from infergy.core.uncertainty import COUNTER_QUANTUM_J

MIN_SPREAD_INTERVALS = 3
"""Anchored intervals needed before the scale's spread and uncertainty are estimated."""
DRIFT_K_SIGMA = 3.0
"""A scale drifts when it is farther from 1 than this many standard uncertainties..."""
DRIFT_TOLERANCE_REL = 0.01
"""...and farther than this (MLPerf's 1 % instrument bound: H200 samples agree to 0.1-0.2 %)."""


@dataclass(frozen=True)
class ScaleSummary:
    """Counter energy over samples energy across anchored intervals: is the sensor's gain right?

    Attributes:
        intervals: anchored intervals with samples energy > 0 behind the figures.
        counter_j: their counter energy.
        samples_j: their samples energy.
        scale: ``counter_j / samples_j`` (the ratio of sums), or None without intervals.
        uncertainty: standard uncertainty of ``scale`` (see the module docstring); None below
            :data:`MIN_SPREAD_INTERVALS` intervals.
        spread: energy-weighted standard deviation of the per-interval scales (how much the
            samples' shape disagrees with the counter at interval resolution), or None.
    """

    intervals: int
    counter_j: float
    samples_j: float
    scale: float | None
    uncertainty: float | None
    spread: float | None

    @classmethod
    def of(cls, counter_j: F64, samples_j: F64) -> ScaleSummary:
        """The summary of intervals given by their counter and samples energies (samples > 0)."""
        x, y = np.asarray(samples_j, dtype=np.float64), np.asarray(counter_j, dtype=np.float64)
        n = int(x.size)
        if n == 0:
            return cls(0, 0.0, 0.0, None, None, None)
        sx, sy = float(x.sum()), float(y.sum())
        scale = sy / sx
        if n < MIN_SPREAD_INTERVALS:
            return cls(n, sy, sx, scale, None, None)
        resid = y - scale * x  # = x * (s_i - scale): the ratio estimator's residuals
        se = math.sqrt(n / (n - 1) * float(np.sum(resid * resid))) / sx
        quant = COUNTER_QUANTUM_J * math.sqrt(2 * n) / sx  # two quantized reads per interval
        spread = math.sqrt(float(np.sum(x * (y / x - scale) ** 2)) / sx)
        return cls(n, sy, sx, scale, math.hypot(se, quant), spread)

    @property
    def drift_sigma(self) -> float | None:
        """``(scale - 1) / uncertainty``, or None when either is unknown or the latter is 0."""
        if self.scale is None or not self.uncertainty:
            return None
        return (self.scale - 1.0) / self.uncertainty

    @property
    def shape_rel(self) -> float | None:
        """``spread / scale``: the samples' relative shape disagreement, or None."""
        if self.spread is None or not self.scale:
            return None
        return self.spread / self.scale

    def drifted(
        self, k_sigma: float = DRIFT_K_SIGMA, tolerance_rel: float = DRIFT_TOLERANCE_REL
    ) -> bool:
        """True when the samples disagree with the counter beyond the scale's uncertainty.

        That is ``|scale - 1| > max(k_sigma * uncertainty, tolerance_rel)``; False when the
        uncertainty is unknown (too few intervals to tell).
        """
        if self.scale is None or self.uncertainty is None:
            return False
        return abs(self.scale - 1.0) > max(k_sigma * self.uncertainty, tolerance_rel)

    def as_dict(self) -> dict[str, float | int | bool | None]:
        """The summary keyed for a result (units in the names; absent figures None)."""
        return {
            "intervals": self.intervals,
            "counter_joules": self.counter_j if self.intervals else None,
            "samples_joules": self.samples_j if self.intervals else None,
            "scale": self.scale,
            "scale_uncertainty": self.uncertainty,
            "scale_spread": self.spread,
            "drift_sigma": self.drift_sigma,
            "drifted": self.drifted(),
        }


def sample_noise_w(
    counter_j: F64, samples_j: F64, length_s: F64, sample_period_s: float
) -> float | None:
    """The samples' noise per sample (W, in the samples' units), measured against the counter.

    Over an interval of length L, white noise of standard deviation sigma on samples every h
    seconds makes their integral wrong by ``sigma * sqrt(h * L)``; the counter says how wrong
    each integral is (once the common scale is taken out). Pooled over the anchored intervals
    given: ``sigma^2 = n / (n - 1) * sum (y_i / R - x_i)^2 / (h * sum L_i)``. Aliasing of
    structure finer than h (millisecond queries seen at 20-ms instants), trapezoid errors at
    steps and a drifting gain all count as noise here, which is what they are to the shape.

    Returns:
        sigma in watts, or None below :data:`MIN_SPREAD_INTERVALS` intervals.
    """
    x, y = np.asarray(samples_j, dtype=np.float64), np.asarray(counter_j, dtype=np.float64)
    n = int(x.size)
    if n < MIN_SPREAD_INTERVALS or float(y.sum()) <= 0:
        return None
    resid = y * (float(x.sum()) / float(y.sum())) - x
    var = n / (n - 1) * float(np.sum(resid * resid)) / (sample_period_s * float(length_s.sum()))
    return math.sqrt(var)


def shape_weights(count: F64, sum_w: F64, sum_w2: F64, noise_w: float | None) -> F64:
    """How much of each interval's shape to keep: ``1 - noise^2 / variance``, in [0, 1].

    The samples' variance inside an interval (from their count, sum and sum of squares) is
    the true power's variance plus the noise's. Keeping the fraction ``var_true / var`` of
    their deviation from the interval's mean (Wiener shrinkage toward linear interpolation)
    keeps a 200-ms burst (variance far above the noise: weight ~1) and drops 20-ms aliasing of
    millisecond queries (variance ~ the noise: weight ~0). Without a noise estimate, or with
    fewer than two samples, the weight is 1 (the shape as it is).
    """
    weight = np.ones(count.size)
    if noise_w is None:
        return weight
    many = count >= 2
    var = np.zeros(count.size)
    np.divide(
        sum_w2 - np.divide(sum_w * sum_w, count, out=np.zeros_like(sum_w), where=many),
        count - 1,
        out=var,
        where=many,
    )
    flat = many & (var <= 0)  # a flat interval: the shape is the line, any weight will do
    keep = many & ~flat
    weight[keep] = np.clip(1.0 - noise_w**2 / var[keep], 0.0, 1.0)
    weight[flat] = 0.0
    return weight
