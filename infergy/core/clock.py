"""The session clock (the one clock policy) and clock offsets of sources on another host's clock.

:class:`SessionClock` is ARCHITECTURE.md's "Time" contract: every sample and query timestamp
is CLOCK_REALTIME ns derived from monotonic through one pair taken at session start. The rest
is MEASUREMENT.md, "Clocks across hosts".

Sign convention: ``offset = source clock - host clock``, so ``host time = source time - offset``;
a source whose clock runs 0.7 s ahead has an offset of +700 ms.

Two estimators:

- **bracketing**: from exchanges (host send, remote time, host receive); each gives
  ``remote - (send + recv) / 2`` with an error of at most half its round trip. The median of
  at least five exchanges is used.
- **cross-correlation** with a reference power signal on the host clock (the GPU sum): for
  each candidate lag the reference is averaged over every source sample's own interval shifted
  by the lag, and Pearson's correlation with the source's values is taken. The lag is searched
  coarse-to-fine over +-``max_lag_s`` and the peak refined by parabolic interpolation. The
  estimate is accepted only when the peak is clearly above noise (see ``MIN_PEAK_CORRELATION``
  and ``MIN_PEAK_MARGIN``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from infergy.core.profile import PowerProfile
from infergy.core.trace import F64, NS_PER_S

MIN_EXCHANGES = 5
MIN_PEAK_CORRELATION = 0.5
"""Below this peak correlation the signals are too unlike to align."""
MIN_PEAK_MARGIN = 0.05
"""The peak must beat every lag more than ``SIDE_LOBE_S`` away by this much (else ambiguous)."""
SIDE_LOBE_S = 1.0
MIN_OBSERVATIONS = 10
_MAX_CELLS = 2_000_000


class SessionClock:
    """The one clock policy (ARCHITECTURE.md, "Time"): CLOCK_REALTIME ns derived from monotonic.

    One (wall, monotonic) pair is taken at construction; every timestamp after that is
    ``wall0 + (monotonic - mono0)``, so an NTP step mid-run cannot tear a trace.
    """

    def __init__(self, wall_ns: int | None = None, monotonic_ns: int | None = None) -> None:
        self.wall0_ns = time.time_ns() if wall_ns is None else wall_ns
        self.mono0_ns = time.monotonic_ns() if monotonic_ns is None else monotonic_ns

    def now_ns(self) -> int:
        """Now, on the session's realtime scale."""
        return self.from_monotonic(time.monotonic_ns())

    def from_monotonic(self, monotonic_ns: int) -> int:
        """A ``time.monotonic_ns()`` reading on the session's realtime scale."""
        return self.wall0_ns + (monotonic_ns - self.mono0_ns)

    def wall_offset_ns(self) -> int:
        """How far the system's wall clock is from the session scale now (NTP drift/steps)."""
        return time.time_ns() - self.now_ns()


@dataclass(frozen=True)
class OffsetEstimate:
    """One clock-offset estimate.

    Attributes:
        offset_ns: source clock minus host clock.
        uncertainty_ns: estimated error bound (half round trip; correlation peak width).
        method: how it was obtained.
        accepted: False when the estimator could not trust its answer (then do not apply it).
        peak_correlation: Pearson's r at the peak (cross-correlation only).
        reason: why it was not accepted, for the result's problems.
    """

    offset_ns: int
    uncertainty_ns: int
    method: Literal["given", "bracketing", "xcorr", "none"]
    accepted: bool = True
    peak_correlation: float | None = None
    reason: str | None = None

    @property
    def offset_ms(self) -> float:
        """The offset in milliseconds (the result's ``clock_offset_ms``)."""
        return self.offset_ns / 1e6


def offset_by_bracketing(
    send_ns: npt.ArrayLike, remote_ns: npt.ArrayLike, recv_ns: npt.ArrayLike
) -> OffsetEstimate:
    """Median offset of round-trip exchanges; uncertainty is the median half round trip."""
    s = np.asarray(send_ns, dtype=np.int64)
    r = np.asarray(remote_ns, dtype=np.int64)
    v = np.asarray(recv_ns, dtype=np.int64)
    rtt = v - s
    ok = rtt >= 0
    if int(np.count_nonzero(ok)) < MIN_EXCHANGES:
        reason = f"need at least {MIN_EXCHANGES} valid exchanges, got {np.count_nonzero(ok)}"
        return OffsetEstimate(0, 0, "bracketing", accepted=False, reason=reason)
    mid2 = s[ok] + v[ok]  # twice the midpoint, kept integral
    offsets = r[ok] - mid2 // 2 - (mid2 % 2) / 2
    return OffsetEstimate(
        offset_ns=round(float(np.median(offsets))),
        uncertainty_ns=round(float(np.median(rtt[ok])) / 2),
        method="bracketing",
    )


def offset_by_xcorr(
    reference: PowerProfile,
    source: PowerProfile,
    *,
    max_lag_s: float = 5.0,
    coarse_step_s: float = 0.05,
    fine_step_s: float = 0.002,
) -> OffsetEstimate:
    """Estimate a source's clock offset by correlating its power with a reference's.

    Args:
        reference: the reference power on the host clock (e.g. the GPU sum).
        source: the source's profile on its own clock (not yet shifted).
        max_lag_s: largest offset searched, either way.
        coarse_step_s: lag step of the first pass.
        fine_step_s: lag step around the coarse peak before parabolic refinement.
    """
    # Observations: the source's covered segments, each a mean power over (start, end].
    a = source.start_s + (source.origin_ns - reference.origin_ns) / NS_PER_S
    b = source.end_s + (source.origin_ns - reference.origin_ns) / NS_PER_S
    obs_w = 0.5 * (source.p0_w + source.p1_w)
    width = b - a
    keep = width > 0
    a, b, obs_w = a[keep], b[keep], obs_w[keep]

    def corr(lags_s: F64) -> F64:
        # bound the (lags x observations) matrices to a few million cells
        rows = max(1, _MAX_CELLS // max(a.size, 1))
        chunks = [corr_rows(lags_s[k : k + rows]) for k in range(0, lags_s.size, rows)]
        return np.concatenate(chunks)

    def corr_rows(lags_s: F64) -> F64:
        # host time = source time - offset: shift each observation interval by -lag
        lo = a[None, :] - lags_s[:, None]
        hi = b[None, :] - lags_s[:, None]
        e = reference.cumulative_j(hi) - reference.cumulative_j(lo)
        cov = reference.covered_s(hi) - reference.covered_s(lo)
        full = cov >= (hi - lo) * (1 - 1e-6)
        pred = np.where(full, e / np.where(full, hi - lo, 1.0), np.nan)
        return _pearson_rows(pred, obs_w)

    coarse = np.arange(-max_lag_s, max_lag_s + coarse_step_s / 2, coarse_step_s)
    r_coarse = corr(coarse)
    if not np.any(np.isfinite(r_coarse)):
        return _rejected("the source and the reference do not overlap in time")
    i = int(np.nanargmax(r_coarse))
    peak = float(r_coarse[i])
    far = np.abs(coarse - coarse[i]) > SIDE_LOBE_S
    side = float(np.nanmax(r_coarse[far])) if np.any(np.isfinite(r_coarse[far])) else -1.0
    fine = coarse[i] + np.arange(-coarse_step_s, coarse_step_s + fine_step_s / 2, fine_step_s)
    r_fine = corr(fine)
    j = int(np.nanargmax(r_fine))
    best, r_best = float(fine[j]), float(r_fine[j])
    curvature = 0.0
    if 0 < j < fine.size - 1:
        y0, y1, y2 = r_fine[j - 1], r_fine[j], r_fine[j + 1]
        curvature = float(y0 - 2 * y1 + y2) / fine_step_s**2
        if curvature < 0:
            best += fine_step_s * 0.5 * float(y0 - y2) / float(y0 - 2 * y1 + y2)
    n_obs = int(a.size)
    # Lag uncertainty: where the parabola drops by one standard error of r (~(1-r^2)/sqrt(n)).
    se_r = (1 - r_best**2) / np.sqrt(max(n_obs, 1))
    u_s = np.sqrt(2 * se_r / -curvature) if curvature < 0 else coarse_step_s
    u_s = max(float(u_s), fine_step_s / 2)
    est = OffsetEstimate(
        offset_ns=round(best * NS_PER_S),
        uncertainty_ns=round(u_s * NS_PER_S),
        method="xcorr",
        peak_correlation=r_best,
    )
    if n_obs < MIN_OBSERVATIONS:
        return _replace(est, f"only {n_obs} source samples overlap the reference")
    if peak < MIN_PEAK_CORRELATION:
        return _replace(est, f"peak correlation {peak:.2f} is below {MIN_PEAK_CORRELATION}")
    if peak - side < MIN_PEAK_MARGIN:
        return _replace(
            est, f"ambiguous: a lag {SIDE_LOBE_S:g} s away correlates almost as well ({side:.2f})"
        )
    return est


def _pearson_rows(pred: F64, obs: F64) -> F64:
    """Pearson's r between each row of ``pred`` and ``obs``, ignoring NaN columns."""
    ok = np.isfinite(pred) & np.isfinite(obs)[None, :]
    n = ok.sum(axis=1)
    x = np.where(ok, pred, 0.0)
    y = np.where(ok, obs[None, :], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = x.sum(axis=1) / n
        my = y.sum(axis=1) / n
        dx = np.where(ok, x - mx[:, None], 0.0)
        dy = np.where(ok, y - my[:, None], 0.0)
        r = (dx * dy).sum(axis=1) / np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
    return np.where(n >= MIN_OBSERVATIONS, r, np.nan)


def _rejected(reason: str) -> OffsetEstimate:
    return OffsetEstimate(0, 0, "xcorr", accepted=False, reason=reason)


def _replace(est: OffsetEstimate, reason: str) -> OffsetEstimate:
    return OffsetEstimate(
        est.offset_ns,
        est.uncertainty_ns,
        est.method,
        accepted=False,
        peak_correlation=est.peak_correlation,
        reason=reason,
    )
