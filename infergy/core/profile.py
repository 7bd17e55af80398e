"""A trace turned into covered segments of known power: the one integration engine.

Every semantics reduces to non-overlapping segments ``(start, end]`` on which power is linear
(``p0`` at the start, ``p1`` at the end):

- ``interval_mean``: sample *i* covers ``(t[i-1], t[i]]`` at constant ``values[i]``; the first
  sample, and a sample after a gap longer than ``gap_factor`` nominal periods, covers only the
  nominal period before it (the rest of the gap stays uncovered).
- ``counter``: the increment ``C[i] - C[i-1]`` spread evenly over ``(t[i-1], t[i]]`` (linear
  interpolation of the counter). A decrease is a reset: that interval is uncovered and counted.
  A long interval between readings is still covered: the counter is cumulative.
- ``instant``: power linear between consecutive valid samples (the trapezoid rule) where they are
  at most ``gap_factor`` nominal periods apart.

Invalid samples (NaN) leave their intervals uncovered. Cumulative energy and covered time are
precomputed, so the energy over any number of intervals costs one ``searchsorted``.
Times inside are float seconds relative to ``origin_ns`` (exact enough: 1e-12 s over hours).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from infergy.core.trace import F64, I64, NS_PER_S, Semantics, Trace

DEFAULT_GAP_FACTOR = 2.0


@dataclass(frozen=True, eq=False)
class PowerProfile:
    """Covered segments of a trace with cumulative energy, covered time and uncertainty.

    Attributes:
        origin_ns: the time that float second 0.0 stands for.
        start_s: segment starts (s after origin), sorted; segments do not overlap.
        end_s: segment ends.
        p0_w: power at each segment's start, in watts.
        p1_w: power at each segment's end, in watts.
        resets: number of counter resets seen (decreases).
        nominal_period_ns: the source's nominal update period.
        semantics: the semantics of the trace it was built from.
    """

    origin_ns: int
    start_s: F64
    end_s: F64
    p0_w: F64
    p1_w: F64
    u_rel: F64 | None
    resets: int
    nominal_period_ns: int
    semantics: Semantics
    _cum_j: F64 = field(init=False, repr=False)
    _cum_cov_s: F64 = field(init=False, repr=False)
    _cum_u_j: F64 | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        length = self.end_s - self.start_s
        seg_j = length * (self.p0_w + self.p1_w) * 0.5
        object.__setattr__(self, "_cum_j", np.concatenate(([0.0], np.cumsum(seg_j))))
        object.__setattr__(self, "_cum_cov_s", np.concatenate(([0.0], np.cumsum(length))))
        if self.u_rel is not None:
            u_j = np.where(np.isfinite(self.u_rel), self.u_rel, 0.0) * np.abs(seg_j)
            object.__setattr__(self, "_cum_u_j", np.concatenate(([0.0], np.cumsum(u_j))))

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def of(cls, trace: Trace, gap_factor: float = DEFAULT_GAP_FACTOR) -> PowerProfile:
        """Build the profile of a trace (see the module docstring for the rules)."""
        t, v = trace.t_ns, trace.values
        nominal = trace.nominal_period_ns
        max_gap = int(gap_factor * nominal)
        resets = 0
        u = trace.uncertainty
        if trace.semantics is Semantics.INTERVAL_MEAN:
            dt = np.diff(t, prepend=t[:1] - nominal) if t.size else t
            span = np.where(dt <= max_gap, dt, nominal)
            start_ns, end_ns = t - span, t
            p0 = p1 = v
            ok = np.isfinite(v)
        elif trace.semantics is Semantics.COUNTER:
            start_ns, end_ns = t[:-1], t[1:]
            inc = np.diff(v)
            resets = int(np.count_nonzero(inc < 0))
            ok = np.isfinite(inc) & (inc >= 0)
            p0 = p1 = np.where(ok, inc, 0.0) / ((end_ns - start_ns) / NS_PER_S)
            u = None if u is None else u[1:]
        else:
            start_ns, end_ns = t[:-1], t[1:]
            p0, p1 = v[:-1], v[1:]
            ok = np.isfinite(p0) & np.isfinite(p1) & ((end_ns - start_ns) <= max_gap)
            u = None if u is None else np.fmax(u[:-1], u[1:])
        origin = int(t[0]) if t.size else 0
        return cls(
            origin_ns=origin,
            start_s=_rel_s(start_ns[ok], origin),
            end_s=_rel_s(end_ns[ok], origin),
            p0_w=np.asarray(p0[ok], dtype=np.float64),
            p1_w=np.asarray(p1[ok], dtype=np.float64),
            u_rel=None if u is None else np.asarray(u[ok], dtype=np.float64),
            resets=resets,
            nominal_period_ns=nominal,
            semantics=trace.semantics,
        )

    # -- evaluation ---------------------------------------------------------------------------

    def rel_s(self, t_ns: npt.ArrayLike) -> F64:
        """Host-clock ns -> this profile's float seconds."""
        return _rel_s(np.asarray(t_ns, dtype=np.int64), self.origin_ns)

    def _locate(self, x_s: F64) -> tuple[I64, F64]:
        """Index of the last segment starting at or before x, and the covered part up to x."""
        k = np.searchsorted(self.start_s, x_s, side="right") - 1
        kc = np.clip(k, 0, None)
        if self.start_s.size == 0:
            return k, np.zeros_like(x_s)
        inside = np.clip(x_s, self.start_s[kc], self.end_s[kc]) - self.start_s[kc]
        return k, np.where(k >= 0, inside, 0.0)

    def cumulative_j(self, x_s: F64) -> F64:
        """Energy in joules from the beginning of the profile up to each time ``x_s``."""
        x_s = np.asarray(x_s, dtype=np.float64)
        if self.start_s.size == 0:
            return np.zeros_like(x_s)
        k, d = self._locate(x_s)
        kc = np.clip(k, 0, None)
        length = self.end_s[kc] - self.start_s[kc]
        slope = np.divide(
            self.p1_w[kc] - self.p0_w[kc], length, out=np.zeros_like(length), where=length > 0
        )
        partial = d * (self.p0_w[kc] + 0.5 * slope * d)
        return np.where(k >= 0, self._cum_j[kc] + partial, 0.0)

    def covered_s(self, x_s: F64) -> F64:
        """Covered time in seconds from the beginning of the profile up to each ``x_s``."""
        x_s = np.asarray(x_s, dtype=np.float64)
        if self.start_s.size == 0:
            return np.zeros_like(x_s)
        k, d = self._locate(x_s)
        return np.where(k >= 0, self._cum_cov_s[np.clip(k, 0, None)] + d, 0.0)

    def uncertainty_j(self, x_s: F64) -> F64 | None:
        """Cumulative ``sum u_i * |E_i|`` (analyzer uncertainty, correlated), or None."""
        if self.u_rel is None or self._cum_u_j is None:
            return None
        x_s = np.asarray(x_s, dtype=np.float64)
        if self.start_s.size == 0:
            return np.zeros_like(x_s)
        k, d = self._locate(x_s)
        kc = np.clip(k, 0, None)
        length = self.end_s[kc] - self.start_s[kc]
        frac = np.divide(d, length, out=np.zeros_like(d), where=length > 0)
        seg_u = np.where(np.isfinite(self.u_rel[kc]), self.u_rel[kc], 0.0) * np.abs(
            length * (self.p0_w[kc] + self.p1_w[kc]) * 0.5
        )
        return np.where(k >= 0, self._cum_u_j[kc] + frac * seg_u, 0.0)

    def energy_j(self, a_ns: npt.ArrayLike, b_ns: npt.ArrayLike) -> F64:
        """Energy over each interval [a, b] (host-clock ns), vectorised."""
        return self.cumulative_j(self.rel_s(b_ns)) - self.cumulative_j(self.rel_s(a_ns))

    def mean_power_w(self, a_ns: npt.ArrayLike, b_ns: npt.ArrayLike) -> F64:
        """Mean power over the covered part of each [a, b]; NaN where nothing is covered."""
        a, b = self.rel_s(a_ns), self.rel_s(b_ns)
        e = self.cumulative_j(b) - self.cumulative_j(a)
        c = self.covered_s(b) - self.covered_s(a)
        return np.divide(e, c, out=np.full_like(e, np.nan), where=c > 0)

    def gaps_ns(self, a_ns: int, b_ns: int) -> list[tuple[int, int]]:
        """Uncovered stretches of [a, b] as (start_ns, end_ns) pairs, in order."""
        a, b = self.rel_s(a_ns).item(), self.rel_s(b_ns).item()
        lo = int(np.searchsorted(self.end_s, a, side="right"))
        hi = int(np.searchsorted(self.start_s, b, side="left"))
        starts = np.concatenate(([a], self.end_s[lo:hi]))
        ends = np.concatenate((self.start_s[lo:hi], [b]))
        starts, ends = np.clip(starts, a, b), np.clip(ends, a, b)
        keep = (ends - starts) > 1e-9  # sub-ns slivers come from float rounding, not gaps
        return [
            (self.origin_ns + round(s * NS_PER_S), self.origin_ns + round(e * NS_PER_S))
            for s, e in zip(starts[keep], ends[keep], strict=True)
        ]


def _rel_s(t_ns: I64, origin_ns: int) -> F64:
    return (t_ns - np.int64(origin_ns)).astype(np.float64) / NS_PER_S
