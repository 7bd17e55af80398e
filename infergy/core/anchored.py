"""Counter-anchored energy: the energy counter's exact deltas, shaped by the dense power samples.

NVML's energy counter is the truth for window energy, but each read costs 2.7-12 ms of CPU, so
it is read sparsely (~1 s, denser near window edges). The driver's 20-ms power samples are cheap
and dense, but their gain is not the counter's on every part (part-time sensors). The
*anchored curve* takes both: between two consecutive counter reads its energy is exactly the
counter delta; inside the interval, the energy is distributed like the samples' energy, scaled
so that the interval integrates to that delta. Per interval (:class:`IntervalKind`):

- ``anchored``: the samples cover the whole interval: scale ``s = delta_j / samples_j``;
  where the samples are mostly noise at their period (20-ms instants of millisecond queries),
  the shape is shrunk toward linear interpolation by a weight measured against the counter
  (:func:`~infergy.core.anchored_scale.shape_weights`): that noise is not structure;
- ``partial``: the samples have a gap inside the interval: the gap runs at the counter's mean
  power over the interval (linear counter interpolation there), the covered part carries the
  rest of the delta in the samples' shape;
- ``linear``: no usable samples (none, or zero energy while the counter rose): the counter's
  linear interpolation, as a plain counter trace would give;
- ``reset`` / ``lost``: the counter went back, or a read is NaN (GPU lost): uncovered, exactly
  as :class:`~infergy.core.profile.PowerProfile` treats the raw counter (its reset count is
  reused, not recomputed).

Before the first and after the last read, the contiguous samples next to that read are
scaled by the nearest anchored intervals' scale (``extrapolated``, reported as such).

**Representation: a densified counter.** The curve is a ``counter`` :class:`Trace` (cumulative
joules) whose knots are the counter reads, with the raw counter values, plus every boundary of
the samples' segments inside anchored intervals. So, with nothing changed downstream:

- over a window whose edges are reads, energy is the counter delta exactly, by construction;
- over any sub-window, :class:`PowerProfile` interpolates cumulative energy linearly between
  knots at most one sample period apart: the scaled samples' integral at every boundary, one
  ``np.interp`` per edge (within a 20-ms segment power is taken constant, an error at most
  ``|dP| * h / 8`` per edge, far below the shape term);
- resets and lost reads stay a decrease and a NaN: counted and left uncovered as before;
- ``window_energy``, ``InFlight.apportion``, ``sum_traces``, ``energy_uncertainty``, the live
  ``LiveSource``, the CSV/store codecs and the plots all take a counter trace already.

A power trace of the scaled samples could not carry a jump of scale at a read, and a profile
object could not be stored or passed to ``analyze``. Coverage of a window by kind and the
uncertainty parts are in :mod:`infergy.core.anchored_window`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from infergy.core.anchored_scale import ScaleSummary, sample_noise_w, shape_weights
from infergy.core.profile import DEFAULT_GAP_FACTOR, PowerProfile
from infergy.core.trace import F64, I64, NS_PER_S, Semantics, Trace
from infergy.errors import TraceError

EXTRAPOLATION_INTERVALS = 5
"""Extrapolation uses the scale of this many anchored intervals nearest to the edge."""
_FULL = 1 - 1e-9


class IntervalKind(enum.IntEnum):
    """How the curve is built between two consecutive counter reads (see the module docstring)."""

    ANCHORED = 0
    PARTIAL = 1
    LINEAR = 2
    RESET = 3
    LOST = 4

    @property
    def label(self) -> str:
        """The kind as spelled in results (``anchored``, ``partial``...)."""
        return self.name.lower()


SHAPED = (IntervalKind.ANCHORED, IntervalKind.PARTIAL)
"""The kinds whose inside follows the samples' shape."""


@dataclass(frozen=True, eq=False)
class AnchorIntervals:
    """One row per pair of consecutive counter reads ``(start_ns, end_ns]``.

    Attributes:
        start_ns: the earlier read.
        end_ns: the later read.
        counter_j: the counter delta (NaN when a read is NaN; negative at a reset).
        samples_j: the samples' own energy over the interval (0 where they cover nothing).
        samples_covered_s: seconds of the interval the samples cover.
        scale: factor applied to the samples (``anchored``, ``partial``), else NaN.
        gap_power_w: power given to the samples' gaps (``partial``: the counter's mean), else 0.
        kind: :class:`IntervalKind` codes.
        shape_weight: share of the samples' shape kept (1: as sampled; 0: linear).
    """

    start_ns: I64
    end_ns: I64
    counter_j: F64
    samples_j: F64
    samples_covered_s: F64
    scale: F64
    gap_power_w: F64
    kind: npt.NDArray[np.int8]
    shape_weight: F64

    def __len__(self) -> int:
        return int(self.start_ns.size)

    @property
    def duration_s(self) -> F64:
        """Length of each interval in seconds."""
        return (self.end_ns - self.start_ns) / NS_PER_S

    def count(self, kind: IntervalKind, mask: npt.NDArray[np.bool_] | None = None) -> int:
        """Intervals of one kind (among ``mask`` when given)."""
        hit = self.kind == kind
        return int(np.count_nonzero(hit if mask is None else hit & mask))


def summarize_scale(
    intervals: AnchorIntervals, mask: npt.NDArray[np.bool_] | None = None
) -> ScaleSummary:
    """The :class:`ScaleSummary` of the anchored intervals (among ``mask`` when given)."""
    use = (intervals.kind == IntervalKind.ANCHORED) & (intervals.samples_j > 0)
    if mask is not None:
        use &= mask
    return ScaleSummary.of(intervals.counter_j[use], intervals.samples_j[use])


@dataclass(frozen=True, eq=False)
class AnchoredCurve:
    """The anchored curve of one GPU and what went into it.

    Attributes:
        trace: the curve as a ``counter`` trace in joules (see the module docstring).
        intervals: per pair of consecutive counter reads: deltas, scales, kinds.
        scale: the summary over all anchored intervals.
        samples: the samples' profile the shape came from (gaps, power near edges).
        extrapolated_ns: stretches before the first / after the last read covered by scaled
            samples, ``(start_ns, end_ns)``.
        resets: counter resets (decreases), as the counter's own profile counts them.
        problems: what was not anchored, for people.
        noise_w: the samples' noise per sample against the counter, or None (too few
            intervals, or ``shrink=False``).
    """

    trace: Trace
    intervals: AnchorIntervals
    scale: ScaleSummary
    samples: PowerProfile
    extrapolated_ns: tuple[tuple[int, int], ...]
    resets: int
    problems: tuple[str, ...]
    noise_w: float | None = None

    @functools.cached_property
    def profile(self) -> PowerProfile:
        """The curve's profile (the integration engine's view), built once."""
        return PowerProfile.of(self.trace)


def anchor(
    counter: Trace,
    samples: Trace,
    *,
    gap_factor: float = DEFAULT_GAP_FACTOR,
    extrapolate: bool = True,
    shrink: bool = True,
) -> AnchoredCurve:
    """Anchor dense power samples to an energy counter (both on the host clock).

    Args:
        counter: the energy counter (``counter`` semantics, joules), read sparsely.
        samples: dense power samples (``instant`` or ``interval_mean``, watts); negative
            readings are treated as invalid.
        gap_factor: samples further apart than this many nominal periods leave a gap.
        extrapolate: cover the samples next to the first and last reads, scaled.
        shrink: shrink noisy shapes toward linear interpolation (False: the shape as sampled).

    Raises:
        TraceError: the counter is not a counter trace, or the samples are not power.
    """
    if counter.semantics is not Semantics.COUNTER:
        msg = f"the anchor must be an energy counter trace, got {counter.semantics.value}"
        raise TraceError(msg)
    if samples.semantics is Semantics.COUNTER:
        msg = "the samples to anchor must be power (instant or interval_mean), got a counter"
        raise TraceError(msg)
    problems: list[str] = []
    negative = int(np.count_nonzero(samples.values < 0))
    if negative:
        problems.append(f"{negative} negative power samples treated as invalid")
        values = np.where(samples.values < 0, np.nan, samples.values)
        samples = Trace(samples.t_ns, values, samples.semantics, samples.nominal_period_ns)
    sp = PowerProfile.of(samples, gap_factor)
    cp = PowerProfile.of(counter)  # the core's reset/validity rules, reused
    rows = _intervals(counter, cp, sp)
    noise_w = None
    if shrink:
        use = (rows.kind == IntervalKind.ANCHORED) & (rows.samples_j > 0)
        period_s = samples.nominal_period_ns / NS_PER_S
        noise_w = sample_noise_w(
            rows.counter_j[use], rows.samples_j[use], rows.duration_s[use], period_s
        )
        rows = dataclasses.replace(rows, shape_weight=_weights(rows, samples, noise_w))
    bounds_ns = _boundaries_ns(sp)
    t_in, v_in = _interior_knots(counter, rows, sp, bounds_ns)
    t_parts, v_parts = [counter.t_ns, t_in], [counter.values, v_in]
    stretches: list[tuple[int, int]] = []
    for side in (-1, 1) if extrapolate else ():
        ext = _extrapolation(counter, rows, sp, bounds_ns, side)
        if ext is not None:
            t_parts.append(ext[0])
            v_parts.append(ext[1])
            stretches.append(ext[2])
    t = np.concatenate(t_parts)
    order = np.argsort(t, kind="stable")
    period = samples.nominal_period_ns if len(samples) else counter.nominal_period_ns
    trace = Trace(t[order], np.concatenate(v_parts)[order], Semantics.COUNTER, period)
    summary = summarize_scale(rows)
    problems += _problems(rows, cp.resets, summary, len(counter))
    curve = (trace, rows, summary, sp, tuple(stretches), cp.resets, tuple(problems), noise_w)
    return AnchoredCurve(*curve)


def _intervals(counter: Trace, cp: PowerProfile, sp: PowerProfile) -> AnchorIntervals:
    """Classify each interval between reads and compute its scale."""
    t, v = counter.t_ns, counter.values
    n = max(t.size - 1, 0)
    delta = np.diff(v)
    valid = np.zeros(n, dtype=bool)
    valid[np.searchsorted(cp.rel_s(t), cp.start_s)] = True  # the counter profile's segments
    x = sp.rel_s(t)
    e_s = np.diff(sp.cumulative_j(x))
    cov_s = np.diff(sp.covered_s(x))
    length_s = np.diff(t) / NS_PER_S
    usable = (cov_s > 0) & np.isfinite(e_s) & (e_s > 0)
    full = cov_s >= length_s * _FULL
    kind = np.where(
        valid,
        np.where(usable, np.where(full, IntervalKind.ANCHORED, IntervalKind.PARTIAL),
                 IntervalKind.LINEAR),
        np.where(delta < 0, IntervalKind.RESET, IntervalKind.LOST),
    ).astype(np.int8)  # fmt: skip
    partial = kind == IntervalKind.PARTIAL
    shaped = np.isin(kind, SHAPED)
    gap_w = np.where(partial, np.where(valid, delta, 0.0) / length_s, 0.0)
    # The covered part carries what the gaps (at the counter's mean power) leave of the delta.
    carried = np.where(partial, delta * np.minimum(cov_s / length_s, 1.0), delta)
    scale = np.full(n, np.nan)
    np.divide(carried, e_s, out=scale, where=shaped)
    return AnchorIntervals(t[:-1], t[1:], delta, e_s, cov_s, scale, gap_w, kind, np.ones(n))


def _weights(rows: AnchorIntervals, samples: Trace, noise_w: float | None) -> F64:
    """Per-interval shape weights from the valid samples' moments inside each interval."""
    if noise_w is None or len(rows) == 0:
        return np.ones(len(rows))
    ok = np.isfinite(samples.values)
    t, w = samples.t_ns[ok], samples.values[ok]
    k = np.searchsorted(rows.start_ns, t, side="right") - 1
    inside = (k >= 0) & (t < rows.end_ns[np.clip(k, 0, len(rows) - 1)])
    k, w = k[inside], w[inside]
    n = len(rows)
    count, sum_w, sum_w2 = (np.bincount(k, x, minlength=n).astype(float) for x in (None, w, w * w))
    return shape_weights(count, sum_w, sum_w2, noise_w)


def _boundaries_ns(sp: PowerProfile) -> I64:
    """Every start and end of the samples' segments, as host-clock ns, sorted and unique."""
    b_s = np.union1d(sp.start_s, sp.end_s)
    return np.unique(sp.origin_ns + np.rint(b_s * NS_PER_S).astype(np.int64))


def _interior_knots(
    counter: Trace, rows: AnchorIntervals, sp: PowerProfile, bounds_ns: I64
) -> tuple[I64, F64]:
    """Cumulative energy at the samples' boundaries strictly inside shaped intervals."""
    t_c, v_c = counter.t_ns, counter.values
    b = bounds_ns
    k = np.searchsorted(t_c, b, side="right") - 1
    inside = (k >= 0) & (k < len(rows))
    k_in = np.clip(k, 0, max(len(rows) - 1, 0))
    if len(rows):
        inside &= (b > t_c[k_in]) & np.isin(rows.kind[k_in], SHAPED)
    b, k = b[inside], k[inside]
    if b.size == 0:
        return b, np.zeros(0)
    x_c = sp.rel_s(t_c)
    s_c, cov_c = sp.cumulative_j(x_c), sp.covered_s(x_c)
    x = sp.rel_s(b)
    uncovered_s = (x - x_c[k]) - (sp.covered_s(x) - cov_c[k])
    rise_j = rows.scale[k] * (sp.cumulative_j(x) - s_c[k]) + rows.gap_power_w[k] * uncovered_s
    weight = rows.shape_weight[k]  # the kept share of the shape, the rest linear in time
    rise_j = weight * rise_j + (1.0 - weight) * rows.counter_j[k] * (b - t_c[k]) / (
        t_c[k + 1] - t_c[k]
    )
    # Exact arithmetic gives 0 <= rise <= delta, non-decreasing in each interval; float
    # rounding must not turn a flat stretch into a "decrease" the profile would call a reset.
    delta = rows.counter_j[k]
    frac = np.clip(np.divide(rise_j, delta, out=np.zeros_like(rise_j), where=delta > 0), 0, 1)
    frac = np.clip(np.maximum.accumulate(k + frac) - k, 0.0, 1.0)  # per-interval running max
    return b, np.minimum(v_c[k] + frac * delta, v_c[k + 1])


def _extrapolation(
    counter: Trace, rows: AnchorIntervals, sp: PowerProfile, bounds_ns: I64, side: int
) -> tuple[I64, F64, tuple[int, int]] | None:
    """Knots of the scaled samples before the first read (side -1) or after the last (+1).

    Returns:
        The knots' times and values, and the stretch they cover, or None.
    """
    if len(counter) == 0 or sp.start_s.size == 0:
        return None
    i = 0 if side < 0 else len(counter) - 1
    t_read, v_read = int(counter.t_ns[i]), float(counter.values[i])
    scale = _nearest_scale(rows, side)
    if scale is None or not math.isfinite(v_read):
        return None
    # the run of contiguous sample segments that touches the read
    breaks = np.flatnonzero(sp.start_s[1:] != sp.end_s[:-1]) + 1
    run_lo = np.concatenate(([0], breaks))
    run_hi = np.concatenate((breaks, [sp.start_s.size])) - 1
    x_read = float(sp.rel_s([t_read])[0])
    r = int(np.searchsorted(sp.start_s[run_lo], x_read, side="right")) - 1
    if r < 0 or sp.end_s[run_hi[r]] < x_read:
        return None
    lo, hi = sp.start_s[run_lo[r]], sp.end_s[run_hi[r]]
    b = bounds_ns
    x = sp.rel_s(b)
    keep = (x >= lo) & (x < x_read) if side < 0 else (x > x_read) & (x <= hi)
    keep &= (b < t_read) if side < 0 else (b > t_read)
    b, x = b[keep], x[keep]
    if b.size == 0:
        return None
    s_read = float(sp.cumulative_j(sp.rel_s([t_read]))[0])
    rise_j = np.maximum(scale * np.abs(sp.cumulative_j(x) - s_read), 0.0)
    if side < 0:  # energy from each knot up to the read: non-increasing in time
        return b, v_read - np.minimum.accumulate(rise_j), (int(b[0]), t_read)
    return b, v_read + np.maximum.accumulate(rise_j), (t_read, int(b[-1]))


def _nearest_scale(rows: AnchorIntervals, side: int) -> float | None:
    """Ratio of sums over the anchored intervals nearest to one end, or None."""
    idx = np.flatnonzero((rows.kind == IntervalKind.ANCHORED) & (rows.samples_j > 0))
    if idx.size == 0:
        return None
    near = idx[:EXTRAPOLATION_INTERVALS] if side < 0 else idx[-EXTRAPOLATION_INTERVALS:]
    return float(rows.counter_j[near].sum() / rows.samples_j[near].sum())


def _problems(rows: AnchorIntervals, resets: int, summary: ScaleSummary, reads: int) -> list[str]:
    """What was not anchored, in one line per kind of shortfall."""
    if reads < 2:
        return [f"{reads} counter read(s): nothing can be anchored"]
    out: list[str] = []
    n = len(rows)
    linear = rows.kind == IntervalKind.LINEAR
    none = linear & (rows.samples_covered_s <= 0)
    if np.any(none):
        out.append(
            f"{int(none.sum())} of {n} counter intervals have no samples "
            f"({rows.duration_s[none].sum():.3g} s): linear counter interpolation"
        )
    if np.any(linear & ~none):
        out.append(
            f"{int((linear & ~none).sum())} of {n} counter intervals have samples with no "
            "energy while the counter rose: linear counter interpolation"
        )
    partial = rows.kind == IntervalKind.PARTIAL
    if np.any(partial):
        gap_s = float((rows.duration_s - rows.samples_covered_s)[partial].sum())
        out.append(
            f"{int(partial.sum())} of {n} counter intervals have sample gaps ({gap_s:.3g} s "
            "in all): those gaps at the interval's mean counter power"
        )
    noisy = np.isin(rows.kind, SHAPED) & (rows.shape_weight < 0.5)
    if np.any(noisy):
        out.append(
            f"{int(noisy.sum())} of {n} counter intervals have samples that are mostly noise at "
            "their period (finer load than the samples): shape shrunk toward linear"
        )
    if resets:
        out.append(f"{resets} counter reset(s): those intervals are not counted")
    lost = rows.count(IntervalKind.LOST)
    if lost:
        out.append(f"{lost} counter interval(s) next to an invalid read: not counted")
    if summary.drifted() and summary.scale is not None and summary.uncertainty is not None:
        out.append(
            f"the samples disagree with the counter: counter/samples = {summary.scale:.4f} "
            f"+- {summary.uncertainty:.4f} over {summary.intervals} intervals"
        )
    return out
