"""One window over an anchored curve: what covered it, how, and how uncertain its energy is.

The window's energy itself needs nothing new: ``window_energy(curve.trace, window)`` (or
``curve.profile.energy_j``) integrates the anchored curve like any counter. What a plain
counter cannot say is *how* each part of the window was covered (:class:`AnchoredCoverage`:
by the samples' shape, by linear counter interpolation, by extrapolated samples, or not at
all) and what that means for the uncertainty (:class:`AnchoredUncertainty`, in the style of
:mod:`infergy.core.uncertainty`, parts combined as a root-sum-square):

- ``quantization``: 1 mJ per counter read the window's energy depends on, weighted by how much
  it depends on it (an edge at fraction ``phi`` of an interval's energy weighs its two reads
  ``1 - phi`` and ``phi``); an edge at a read weighs that read 1.
- ``edges``: where in the curve's resolution at each edge the energy fell. Inside the samples'
  shape the resolution is one sample period: the curve's power near the edge times that period
  (the core's edge rule). In a stretch of linear counter interpolation (an interval without
  usable samples, or a samples gap) of energy ``E`` with the edge at fraction ``f`` of it, the
  energy on either side is unknown: ``max(f, 1 - f) * E``. An edge at a read adds nothing.
- ``shape``: for an edge inside an anchored interval, the split of the interval's exact delta
  at the edge follows the samples. Their integral over a whole interval is off by the relative
  spread ``r`` of the per-interval scales (measured on this curve; :data:`DEFAULT_SHAPE_REL`
  with too few intervals); errors that accumulate like a random walk in time then put the
  split off by ``r * sqrt(X * (delta - X))``, ``X`` the energy before the edge (zero at a read,
  largest mid-interval, and falling as reads get denser). In an interval with a samples gap,
  the gap's estimated energy is added in quadrature (where it really fell is unknown).
- ``extrapolation``: the window's energy beyond the first or last read, times ``r`` (the
  extrapolated stretch is one more interval whose own scale is not measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from infergy.core.anchored import AnchoredCurve, IntervalKind, summarize_scale
from infergy.core.anchored_scale import ScaleSummary
from infergy.core.trace import NS_PER_S, Window
from infergy.core.uncertainty import COUNTER_QUANTUM_J

DEFAULT_SHAPE_REL = 0.05
"""Relative shape disagreement assumed when too few intervals measure it (5 %: generous for
the H200, whose per-interval scales scatter by ~1 %)."""


@dataclass(frozen=True)
class AnchoredCoverage:
    """How each second of a window was covered (they add up to ``duration_s``).

    Attributes:
        duration_s: the window's length.
        shaped_s: the samples' shape, scaled to the counter delta.
        linear_s: linear counter interpolation (intervals without usable samples, sample gaps).
        extrapolated_s: beyond the first or last counter read, samples at the nearest scale.
        uncovered_s: not covered: counter reset, invalid read, or no data at all.
        intervals: the kinds of the counter intervals overlapping the window, counted.
    """

    duration_s: float
    shaped_s: float
    linear_s: float
    extrapolated_s: float
    uncovered_s: float
    intervals: dict[str, int]

    @property
    def shaped_fraction(self) -> float:
        """The share of the window covered by the samples' shape (0..1)."""
        return min(1.0, self.shaped_s / self.duration_s)

    def as_dict(self) -> dict[str, object]:
        """The coverage keyed for a result."""
        return {
            "shaped_seconds": self.shaped_s,
            "linear_seconds": self.linear_s,
            "extrapolated_seconds": self.extrapolated_s,
            "uncovered_seconds": self.uncovered_s,
            "intervals": dict(self.intervals),
        }


@dataclass(frozen=True)
class AnchoredUncertainty:
    """The parts of an anchored window energy's uncertainty, in joules (None: not applicable)."""

    quantization_j: float
    edges_j: float
    shape_j: float
    extrapolation_j: float | None

    @property
    def total_j(self) -> float:
        """Root-sum-square of the parts that apply."""
        parts = (self.quantization_j, self.edges_j, self.shape_j, self.extrapolation_j)
        return math.sqrt(sum(p * p for p in parts if p is not None))

    def as_dict(self) -> dict[str, float | None]:
        """The parts keyed as in the result JSON."""
        return {
            "quantization_joules": self.quantization_j,
            "edges_joules": self.edges_j,
            "shape_joules": self.shape_j,
            "extrapolation_joules": self.extrapolation_j,
        }


@dataclass(frozen=True)
class AnchoredWindow:
    """An anchored curve over one window.

    Attributes:
        energy_j: the curve's energy over the window's covered part; None if nothing covered.
        coverage: how the window was covered.
        scale: the anchoring scale over the anchored intervals overlapping the window.
        uncertainty: the parts of the energy's uncertainty.
        problems: what was not anchored in this window, for people.
    """

    energy_j: float | None
    coverage: AnchoredCoverage
    scale: ScaleSummary
    uncertainty: AnchoredUncertainty
    problems: tuple[str, ...]


@dataclass
class _Edges:
    """Per-edge terms collected for a window."""

    weights: dict[int, float]
    edges_j2: float = 0.0
    shape_j2: float = 0.0


def anchored_window(curve: AnchoredCurve, window: Window) -> AnchoredWindow:
    """Coverage, scale and uncertainty parts of an anchored curve over a window."""
    prof = curve.profile
    a, b = window.start_ns, window.end_ns
    covered = prof.covered_s(prof.rel_s([a, b]))
    energy = prof.energy_j([a], [b])[0]
    coverage, overlapping = _coverage(curve, window)
    rel = curve.scale.shape_rel or DEFAULT_SHAPE_REL
    terms = _Edges({})
    for sign, x_ns in ((-1.0, a), (1.0, b)):
        _edge_terms(curve, x_ns, sign, rel, terms)
    quant = COUNTER_QUANTUM_J * math.sqrt(sum(w * w for w in terms.weights.values()))
    extrap_j = None
    if coverage.extrapolated_s > 0:
        ext = sum(
            abs(float(prof.energy_j([max(a, s)], [min(b, e)])[0]))
            for s, e in curve.extrapolated_ns
            if min(b, e) > max(a, s)
        )
        extrap_j = ext * rel
    unc = AnchoredUncertainty(quant, math.sqrt(terms.edges_j2), math.sqrt(terms.shape_j2), extrap_j)
    scale = summarize_scale(curve.intervals, overlapping)
    return AnchoredWindow(
        float(energy) if covered[1] > covered[0] else None,
        coverage,
        scale,
        unc,
        tuple(_problems(coverage, scale)),
    )


def _coverage(
    curve: AnchoredCurve, window: Window
) -> tuple[AnchoredCoverage, npt.NDArray[np.bool_]]:
    """The window's seconds by how they were covered, and the overlapping intervals' mask."""
    rows, sp = curve.intervals, curve.samples
    a, b = window.start_ns, window.end_ns
    lo, hi = np.maximum(rows.start_ns, a), np.minimum(rows.end_ns, b)
    overlap = hi > lo
    o_s = np.where(overlap, hi - lo, 0) / NS_PER_S
    cov_s = np.minimum(np.diff(sp.covered_s(sp.rel_s(np.stack((lo, hi)))), axis=0)[0], o_s)
    kind = rows.kind
    partial = kind == IntervalKind.PARTIAL
    shaped = float(o_s[kind == IntervalKind.ANCHORED].sum() + cov_s[partial].sum())
    linear = float(o_s[kind == IntervalKind.LINEAR].sum() + (o_s - cov_s)[partial].sum())
    extrap = sum(max(0, min(b, e) - max(a, s)) for s, e in curve.extrapolated_ns) / NS_PER_S
    rest = max(0.0, window.duration_s - shaped - linear - extrap)
    counts = {k.label: rows.count(k, overlap) for k in IntervalKind if rows.count(k, overlap)}
    return AnchoredCoverage(window.duration_s, shaped, linear, extrap, rest, counts), overlap


def _edge_terms(curve: AnchoredCurve, x_ns: int, sign: float, rel: float, out: _Edges) -> None:
    """Add one window edge's read weights and edge/shape terms to ``out``."""
    rows, prof = curve.intervals, curve.profile
    n = len(rows)
    reads = np.concatenate((rows.start_ns, rows.end_ns[-1:]))
    k = int(np.searchsorted(reads, x_ns, side="right")) - 1
    if 0 <= k <= n and reads[k] == x_ns:  # at a read: exact but for its quantization
        out.weights[k] = out.weights.get(k, 0.0) + sign
        return
    period_ns = curve.trace.nominal_period_ns
    near_w = prof.mean_power_w([x_ns - period_ns], [x_ns + period_ns])[0]
    resolution_j = abs(float(near_w)) * period_ns / NS_PER_S if np.isfinite(near_w) else 0.0
    if not 0 <= k < n:  # beyond the reads: extrapolated (or not covered at all)
        for s, e in curve.extrapolated_ns:
            if s <= x_ns <= e:
                read = 0 if e <= reads[0] else n  # the read the stretch hangs from
                out.weights[read] = out.weights.get(read, 0.0) + sign
                out.edges_j2 += resolution_j**2
        return
    kind = IntervalKind(int(rows.kind[k]))
    if kind in (IntervalKind.RESET, IntervalKind.LOST):
        return  # uncovered: the coverage says so
    t0, t1 = int(reads[k]), int(reads[k + 1])
    delta = float(rows.counter_j[k])
    before_j = float(prof.energy_j([t0], [x_ns])[0])
    f_time = (x_ns - t0) / (t1 - t0)
    phi = before_j / delta if delta > 0 else f_time
    out.weights[k] = out.weights.get(k, 0.0) + sign * (1.0 - phi)
    out.weights[k + 1] = out.weights.get(k + 1, 0.0) + sign * phi
    if kind is IntervalKind.LINEAR:
        out.edges_j2 += (max(f_time, 1.0 - f_time) * delta) ** 2
        return
    gap_w = float(rows.gap_power_w[k])
    gap = next(((g0, g1) for g0, g1 in curve.samples.gaps_ns(t0, t1) if g0 < x_ns < g1), None)
    if gap is None:
        out.edges_j2 += resolution_j**2
    else:  # inside a samples gap: linear counter interpolation over that gap
        f = (x_ns - gap[0]) / (gap[1] - gap[0])
        out.edges_j2 += (max(f, 1.0 - f) * gap_w * (gap[1] - gap[0]) / NS_PER_S) ** 2
    gap_j = gap_w * max(0.0, (t1 - t0) / NS_PER_S - float(rows.samples_covered_s[k]))
    split_j2 = max(0.0, before_j) * max(0.0, delta - before_j)
    out.shape_j2 += rel * rel * split_j2 + gap_j**2


def _problems(coverage: AnchoredCoverage, scale: ScaleSummary) -> list[str]:
    """What was not anchored in the window, in one line per kind of shortfall."""
    out: list[str] = []
    if coverage.uncovered_s > 0:
        out.append(
            f"{coverage.uncovered_s:.3g} s of the window not covered (counter reset, invalid "
            "read, or no data)"
        )
    if coverage.linear_s > 0:
        out.append(
            f"{coverage.linear_s:.3g} s of the window at linear counter interpolation (no "
            "usable samples there)"
        )
    if coverage.extrapolated_s > 0:
        out.append(
            f"{coverage.extrapolated_s:.3g} s of the window beyond the first or last counter "
            "read: samples scaled by the nearest intervals' scale"
        )
    if scale.drifted() and scale.scale is not None and scale.uncertainty is not None:
        out.append(
            f"the samples disagree with the counter in the window: counter/samples = "
            f"{scale.scale:.4f} +- {scale.uncertainty:.4f}"
        )
    return out
