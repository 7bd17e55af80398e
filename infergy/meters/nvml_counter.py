"""When the GPU energy counter updates, and when to read it: a pure model, no I/O.

NVML's energy counter changes on a fixed period (100 ms on an H100) and a read returns the
value of the last update. Two facts measured on an H100 (driver 580, a VM) shape how it is read:

- where a read lands in the period sets its cost: 2.7-3.5 ms of CPU from 25 ms after an
  update on, but 6-11 ms 5-10 ms after it. A naive "sync, then poll every period" schedule
  lands just after each update and cost 12-15 % of a core; reading mid-period costs ~4 %.
- a value belongs to the update that produced it, not to the read: stamping it at the read
  time lags by up to a period.

:class:`CounterTracker` keeps a phase model (updates at ``u0 + k * T``), learned from tight
reads around an update: at start, then short re-syncs after 4, 8, 16... periods (at most every
30 s) that also refine ``T`` over a growing baseline. Regular reads are scheduled mid-period
(:meth:`CounterTracker.next_read_ns`) and each new value is stamped at the update instant the
model says produced it (within a few ms). Where the model disagrees with what is read (a change
with no predicted update, or a predicted update that did not change the value), the value is
stamped at the midpoint between the two reads that bracket the change and a re-sync is asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class CounterPhase:
    """Update instants ``last_ns + k * period_ns`` (session-clock ns).

    Attributes:
        first_ns: the first update pinned since the phase was (re)established.
        last_ns: the latest update pinned.
        period_ns: the update period: ``(last - first) / periods`` from the longest baseline
            so far (at least 4 periods; before that, the period measured at open).
        periods: whole periods from ``first_ns`` to ``last_ns``.
        nominal_ns: the period measured at open; refinements stay within 5 % of it.
        baseline: the periods behind ``period_ns`` (kept when the phase restarts).
    """

    first_ns: int
    last_ns: int
    period_ns: float
    periods: int = 0
    nominal_ns: float = 0.0
    baseline: int = 0

    def __post_init__(self) -> None:
        self.nominal_ns = self.nominal_ns or self.period_ns

    def update_at_or_before(self, t_ns: int) -> float:
        """The model's latest update instant at or before ``t_ns``."""
        return self.last_ns + math.floor((t_ns - self.last_ns) / self.period_ns) * self.period_ns

    def observe(self, update_ns: int) -> bool:
        """A pinned update instant: extend the baseline, or restart here if it is off the grid.

        Periods are counted from the previous pin (few enough that the current estimate
        cannot miscount them); the period is refined over the whole baseline once that is
        longer than the one behind the current estimate.

        Returns:
            False when the phase restarted (the update was not where the model put it).
        """
        k = (update_ns - self.last_ns) / self.period_ns
        n = round(k)
        if n == 0 and abs(k) <= 0.25:
            return True  # the update already pinned
        spanned = self.periods + n
        refined = (update_ns - self.first_ns) / spanned if spanned > 0 else self.period_ns
        off_grid = n < 1 or abs(k - n) > 0.25
        if off_grid or (spanned >= 4 and abs(refined / self.nominal_ns - 1) > 0.05):
            self.first_ns = self.last_ns = update_ns  # not where the model put it: start over
            self.periods = 0
            return False
        self.periods, self.last_ns = spanned, update_ns
        if spanned >= max(4, self.baseline):
            self.period_ns, self.baseline = refined, spanned
        return True


@dataclass(frozen=True)
class CounterReading:
    """What one read of the counter means.

    Attributes:
        stamp_ns: the time to store the new value at, or None when there is nothing new.
        went_back: the value decreased (a reset) since the previous read.
        restarted_from_mj: after a loss, the pre-loss value when the new one is lower.
    """

    stamp_ns: int | None = None
    went_back: bool = False
    restarted_from_mj: int | None = None


class CounterTracker:
    """Turns raw energy-counter reads into stamped values and plans the next reads.

    Args:
        period_s: the counter's update period as measured at open.
        tight_bracket_s: a change seen between reads closer than this pins an update instant.
    """

    def __init__(self, period_s: float, tight_bracket_s: float = 0.015) -> None:
        self.period_ns = period_s * 1e9
        self.tight_bracket_ns = min(tight_bracket_s * 1e9, self.period_ns / 4)
        self.phase: CounterPhase | None = None
        self.observed = 0
        """Update instants pinned so far (a re-sync is done when this grows)."""
        self._resync_periods = 4
        self.last_mj: int | None = None
        self.last_read_ns = 0
        self.resync_wanted = False
        self._mj_before_loss: int | None = None

    def read(self, t0_ns: int, mj: int, t1_ns: int) -> CounterReading:
        """One read made between ``t0_ns`` and ``t1_ns`` that returned ``mj``."""
        mid = (t0_ns + t1_ns) // 2
        prev_mj, prev_ns = self.last_mj, self.last_read_ns
        self.last_mj, self.last_read_ns = mj, mid
        if prev_mj is None:  # the first read (start, after a loss): nothing brackets it yet
            before, self._mj_before_loss = self._mj_before_loss, None
            restarted = before if before is not None and mj < before else None
            return CounterReading(restarted_from_mj=restarted)
        predicted = None if self.phase is None else self.phase.update_at_or_before(mid)
        if mj == prev_mj:
            if predicted is not None and prev_ns < predicted - 0.1 * self.phase_period_ns:
                self.resync_wanted = True  # an update was due in this bracket, none came
            return CounterReading()
        stamp = (prev_ns + mid) // 2
        if mid - prev_ns <= self.tight_bracket_ns:  # the change is pinned: learn from it
            self.observed += 1
            if self.phase is None:
                self.phase = CounterPhase(stamp, stamp, self.period_ns)
                self._resync_periods = 4
            elif not self.phase.observe(stamp):
                self._resync_periods = 4
        elif predicted is not None and prev_ns < predicted <= mid:
            stamp = round(predicted)
        else:
            self.resync_wanted = True
        return CounterReading(stamp_ns=stamp, went_back=mj < prev_mj)

    @property
    def phase_period_ns(self) -> float:
        """The current estimate of the update period, ns."""
        return self.period_ns if self.phase is None else self.phase.period_ns

    def lost(self) -> None:
        """The GPU was lost: forget the last value and the phase (a reload restarts both)."""
        if self.last_mj is not None:
            self._mj_before_loss = self.last_mj
        self.last_mj, self.phase = None, None

    def next_read_ns(self, now_ns: int, interval_ns: float) -> int:
        """The next regular read: mid-way between updates, every ``interval_ns``, after now."""
        if self.phase is None:
            return now_ns + round(interval_ns)
        base = self.phase.last_ns + self.phase.period_ns / 2
        k = math.floor((now_ns - base) / interval_ns) + 1
        while round(base + k * interval_ns) <= now_ns:  # float rounding: strictly after now
            k += 1
        return round(base + k * interval_ns)

    def resync_interval_s(self, longest_s: float) -> float:
        """Seconds to the next re-sync: 4 periods after the phase is (re)established, doubling.

        Each refinement of the period then spans as many periods as the next interval, so the
        drift between re-syncs stays about one pin's error (a few ms), up to ``longest_s``.
        """
        interval_s = self._resync_periods * self.phase_period_ns / 1e9
        if interval_s < longest_s:
            self._resync_periods *= 2
        return min(interval_s, longest_s)

    def read_interval_ns(
        self, poll_factor: float, min_interval_s: float, sparse_interval_s: float = 0.0
    ) -> float:
        """Time between regular reads: every ``poll_factor`` periods, or sparsely.

        ``sparse_interval_s`` > 0 rounds it to whole update periods (the reads stay mid-period)
        and reads no more often than ``poll_factor`` says.
        """
        update_ns = self.phase_period_ns
        interval_ns = update_ns * poll_factor
        if sparse_interval_s > 0:
            interval_ns = max(
                interval_ns, max(1, round(sparse_interval_s * 1e9 / update_ns)) * update_ns
            )
        return max(interval_ns, min_interval_s * 1e9)

    def resync_start_ns(self, after_ns: int) -> int:
        """When to start a re-sync: a few ms before the first update after ``after_ns``."""
        update_ns = self.next_update_ns(after_ns)
        if update_ns is None:
            return after_ns
        return round(update_ns - min(8e6, self.phase_period_ns / 4))

    def next_update_ns(self, after_ns: int) -> int | None:
        """The model's first update instant after ``after_ns`` (None without a phase)."""
        if self.phase is None:
            return None
        update = self.phase.update_at_or_before(after_ns) + self.phase.period_ns
        return round(update if round(update) > after_ns else update + self.phase.period_ns)
