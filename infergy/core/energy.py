"""Window figures for one source: energy, coverage, gaps, MLPerf's rule, idle baseline.

The time-weighted figures integrate the trace according to its semantics (``PowerProfile``);
``mlperf_mean_watts`` reproduces MLPerf's submission checker exactly: the plain mean of the
sample lines strictly inside ``(power_begin, power_end)`` whose watts are > 0. The two differ at the
window edges and wherever samples are missing, which is why both are reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infergy.core.profile import DEFAULT_GAP_FACTOR, PowerProfile
from infergy.core.trace import F64, I64, Semantics, Trace, Window


@dataclass(frozen=True)
class WindowEnergy:
    """Time-weighted figures of one source over a window.

    Attributes:
        energy_j: integral of power over the covered part of the window.
        covered_s: seconds of the window covered by valid sample intervals.
        duration_s: the window's length.
        samples: valid samples with timestamps inside the window (inclusive).
        invalid_samples: invalid (NaN) samples inside the window.
        resets: counter resets (decreases) inside the window.
        gaps_ns: uncovered stretches of the window, (start_ns, end_ns).
    """

    energy_j: float
    covered_s: float
    duration_s: float
    samples: int
    invalid_samples: int
    resets: int
    gaps_ns: tuple[tuple[int, int], ...]

    @property
    def coverage(self) -> float:
        """Fraction of the window covered by valid sample intervals (0..1)."""
        return min(1.0, self.covered_s / self.duration_s)

    @property
    def average_w(self) -> float | None:
        """Energy over the window's full duration (MEASUREMENT.md); None if nothing covered."""
        return self.energy_j / self.duration_s if self.covered_s > 0 else None


def window_energy(
    trace: Trace,
    window: Window,
    *,
    gap_factor: float = DEFAULT_GAP_FACTOR,
    profile: PowerProfile | None = None,
) -> WindowEnergy:
    """Integrate one trace over a window.

    Args:
        trace: the source's samples on the host clock.
        window: the measured run.
        gap_factor: intervals longer than this many nominal periods are gaps.
        profile: the trace's profile when the caller already built it.

    Returns:
        Energy, coverage, gaps and sample counts for the window.
    """
    prof = profile if profile is not None else PowerProfile.of(trace, gap_factor)
    a, b = prof.rel_s([window.start_ns, window.end_ns])
    cum_j = prof.cumulative_j(np.array([a, b]))
    cov_s = prof.covered_s(np.array([a, b]))
    inside = trace.between(window.start_ns, window.end_ns)
    valid = int(np.count_nonzero(inside.valid))
    resets = 0
    if trace.semantics is Semantics.COUNTER and len(inside) > 0:
        lo = int(np.searchsorted(trace.t_ns, window.start_ns, side="left"))
        hi = int(np.searchsorted(trace.t_ns, window.end_ns, side="right"))
        # include the reading before the window: a reset between it and the first inside counts
        seg = trace.values[max(lo - 1, 0) : hi]
        resets = int(np.count_nonzero(np.diff(seg) < 0))
    return WindowEnergy(
        energy_j=float(cum_j[1] - cum_j[0]),
        covered_s=float(cov_s[1] - cov_s[0]),
        duration_s=window.duration_s,
        samples=valid,
        invalid_samples=len(inside) - valid,
        resets=resets,
        gaps_ns=tuple(prof.gaps_ns(window.start_ns, window.end_ns)),
    )


def mlperf_average_watts(trace: Trace, window: Window) -> float | None:
    """MLPerf's power rule on a trace's samples: mean of begin < t < end (strict), W > 0.

    Defined on power samples only: a counter trace has no such figure (None). None also when no
    sample qualifies. A trace has one sample per timestamp and invalid readings as NaN; for the
    checker's figure from the lines as written, use :func:`mlperf_mean_watts` on them.
    """
    if trace.semantics is Semantics.COUNTER:
        return None
    return mlperf_mean_watts(trace.t_ns, trace.values, window).mean_w


OVERRANGE_W = 9.9e37
"""Yokogawa writes overrange as 9.9E+37 and no data as 9.91E+37."""


@dataclass(frozen=True)
class MlperfMean:
    """MLPerf's mean power over a window, and what in it the time-weighted figures treat apart.

    Attributes:
        mean_w: the plain mean of the samples kept (None: none kept).
        samples: samples kept (``begin < t < end`` and ``W > 0``).
        repeated: kept samples whose timestamp another kept sample has too.
        overrange: kept samples that are not readings (9.9E+37, 9.91E+37, inf).
    """

    mean_w: float | None
    samples: int
    repeated: int
    overrange: int


def mlperf_mean_watts(t_ns: I64, watts: F64, window: Window) -> MlperfMean:
    """The mean MLPerf's submission checker computes (``PowerCheck.get_power_metric_check``).

    Every sample line counts as written: the window test is strict on both ends, only
    ``W > 0`` is required (so -1, -2, 0 and NaN drop out, but 9.9E+37 and inf are kept, as in
    the checker), lines that share a timestamp all count, order does not matter, nothing is
    weighted by time. ``t_ns`` are the source's own timestamps: the checker never shifts them.
    """
    t = np.asarray(t_ns, dtype=np.int64)
    w = np.asarray(watts, dtype=np.float64)
    keep = (t > window.start_ns) & (t < window.end_ns) & (w > 0)
    sel, at = w[keep], t[keep]
    if sel.size == 0:
        return MlperfMean(None, 0, 0, 0)
    _, counts = np.unique(at, return_counts=True)
    repeated = int(counts[counts > 1].sum())
    overrange = int(np.count_nonzero(~np.isfinite(sel) | (sel >= OVERRANGE_W)))
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(np.sum(sel) / sel.size)
    return MlperfMean(mean, int(sel.size), repeated, overrange)


def idle_watts(
    trace: Trace,
    idle: Window,
    *,
    gap_factor: float = DEFAULT_GAP_FACTOR,
    profile: PowerProfile | None = None,
) -> float | None:
    """Mean power over an idle baseline window (time-weighted over its covered part)."""
    prof = profile if profile is not None else PowerProfile.of(trace, gap_factor)
    mean = prof.mean_power_w([idle.start_ns], [idle.end_ns])[0]
    return float(mean) if np.isfinite(mean) else None
