"""The energy counter's timing model, on synthetic reads (no threads, no clocks).

A simulated counter updates every ``T`` (100 ms, as on an H100) with a little jitter; reads take
3.5 ms. The tracker must pin the phase from tight reads, schedule reads mid-period, stamp each
value at the update that produced it, and notice when the model and the counter disagree.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from infergy.meters.nvml_counter import CounterPhase, CounterTracker

MS = 1_000_000
T_NS = 100 * MS
READ_NS = 3_500_000


class SimCounter:
    """Updates at ``u0 + k T (+ jitter)``; the value at update k is 1000 * k mJ (+ base)."""

    def __init__(self, u0_ns: int, period_ns: float = T_NS, jitter_ns: int = 0, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.updates = u0_ns + np.arange(20_000) * period_ns
        self.updates += rng.integers(-jitter_ns, jitter_ns + 1, self.updates.size)
        self.base_mj = 5_000_000

    def value_at(self, t_ns: int) -> int:
        k = int(np.searchsorted(self.updates, t_ns, side="right")) - 1
        return self.base_mj + 1000 * k

    def read(self, tracker: CounterTracker, t0_ns: int):
        """A read that samples the counter in the middle of its 3.5-ms call."""
        return tracker.read(t0_ns, self.value_at(t0_ns + READ_NS // 2), t0_ns + READ_NS)

    def pin(self, tracker: CounterTracker, start_ns: int, pause_ns: int = 2 * MS) -> int:
        """Tight reads from ``start_ns`` until an update is pinned; returns the time after."""
        seen, t = tracker.observed, start_ns
        while tracker.observed == seen:
            self.read(tracker, t)
            t += READ_NS + pause_ns
        return t


def run_regular(sim: SimCounter, tracker: CounterTracker, t_ns: int, seconds: float, factor=1):
    """Regular reads where the tracker schedules them, re-syncing when and as it asks."""
    stamps, values = [], []
    end = t_ns + seconds * 1e9
    next_resync = t_ns + tracker.resync_interval_s(30.0) * 1e9
    while t_ns < end:
        t_ns = tracker.next_read_ns(t_ns, factor * tracker.phase_period_ns)
        if tracker.resync_wanted or t_ns >= next_resync:
            tracker.resync_wanted = False
            t_ns = sim.pin(tracker, tracker.next_update_ns(t_ns) - 8 * MS)
            next_resync = t_ns + tracker.resync_interval_s(30.0) * 1e9
            continue
        r = sim.read(tracker, t_ns)
        if r.stamp_ns is not None:
            stamps.append(r.stamp_ns)
            values.append(tracker.last_mj)
    return np.array(stamps), np.array(values)


def update_of(sim: SimCounter, mj: np.ndarray) -> np.ndarray:
    return sim.updates[((mj - sim.base_mj) // 1000).astype(int)]


@pytest.mark.parametrize("calibration_error", [-0.015, 0.0, 0.015])
def test_values_are_stamped_at_the_update_that_produced_them(calibration_error):
    sim = SimCounter(u0_ns=1_000 * MS + 37 * MS, jitter_ns=300_000)
    tracker = CounterTracker(period_s=0.1 * (1 + calibration_error))
    t = sim.pin(tracker, 1_000 * MS)
    assert tracker.phase is not None
    stamps, values = run_regular(sim, tracker, t, seconds=120.0)
    err_ms = (stamps - update_of(sim, values)) / MS
    assert len(stamps) > 1150  # about one stored value per period
    # pins are +-2.75 ms (3.5-ms reads 5.5 ms apart); the phase carries that error
    assert np.median(np.abs(err_ms)) < 3.0 and np.abs(err_ms).max() < 8.0
    assert tracker.phase_period_ns == pytest.approx(T_NS, rel=2e-4)  # refined from 1.5 % off
    assert bool(np.all(np.diff(stamps) > 0))


def test_reads_are_scheduled_mid_period():
    sim = SimCounter(u0_ns=500 * MS)
    tracker = CounterTracker(period_s=0.1)
    t = sim.pin(tracker, 490 * MS)
    nxt = tracker.next_read_ns(t, T_NS)
    phase_in_period = ((nxt - 500 * MS) % T_NS) / T_NS
    assert phase_in_period == pytest.approx(0.5, abs=0.03)
    assert tracker.next_read_ns(t, 2 * T_NS) >= nxt  # factor 2: every other period


def test_reading_every_other_period_stamps_the_later_update():
    sim = SimCounter(u0_ns=0)
    tracker = CounterTracker(period_s=0.1)
    t = sim.pin(tracker, 5 * MS)
    stamps, values = run_regular(sim, tracker, t, seconds=20.0, factor=2)
    assert 90 < len(stamps) < 110
    assert np.abs(stamps - update_of(sim, values)).max() < 8 * MS


def test_a_phase_jump_asks_for_a_resync_and_is_relearned():
    sim = SimCounter(u0_ns=0)
    tracker = CounterTracker(period_s=0.1)
    t = sim.pin(tracker, 5 * MS)
    sim.updates[sim.updates > t + 1e9] += 40 * MS  # the firmware's phase moves by 40 ms
    stamps, values = run_regular(sim, tracker, t, seconds=10.0)
    late = stamps > t + 2e9  # the jump is noticed at the next re-sync (at most 30 s)
    assert np.abs(stamps[late] - update_of(sim, values[late])).max() < 8 * MS


def test_missing_update_is_suspect_and_decrease_is_a_reset():
    tracker = CounterTracker(period_s=0.1)
    tracker.phase = CounterPhase(first_ns=0, last_ns=0, period_ns=T_NS)
    assert tracker.read(40 * MS, 1000, 43 * MS).stamp_ns is None  # first read
    assert tracker.read(150 * MS, 2000, 153 * MS).stamp_ns == 100 * MS  # the update at 100
    assert tracker.read(250 * MS, 2000, 253 * MS).stamp_ns is None  # update at 200 missing
    assert tracker.resync_wanted
    r = tracker.read(350 * MS, 500, 353 * MS)
    assert r.went_back and r.stamp_ns == 300 * MS


def test_a_lost_gpu_forgets_the_phase_and_reports_a_restarted_counter():
    tracker = CounterTracker(period_s=0.1)
    tracker.read(0, 9_000, READ_NS)
    tracker.lost()
    assert tracker.phase is None and tracker.last_mj is None
    assert tracker.read(10**9, 120, 10**9 + READ_NS).restarted_from_mj == 9_000
    tracker.lost()
    assert tracker.read(2 * 10**9, 500, 2 * 10**9 + READ_NS).restarted_from_mj is None


def test_phase_refinement_needs_a_baseline_and_stays_near_the_calibrated_period():
    phase = CounterPhase(first_ns=0, last_ns=0, period_ns=T_NS)
    assert phase.observe(101 * MS) and phase.period_ns == T_NS  # 1 period: not refined yet
    assert phase.observe(1_001 * MS) and phase.period_ns == pytest.approx(100.1 * MS)  # 10
    assert phase.observe(1_001 * MS)  # the same update again: nothing changes
    assert not phase.observe(1_051 * MS)  # half a period off the grid: start over
    assert phase.first_ns == phase.last_ns == 1_051 * MS and phase.periods == 0
    assert phase.period_ns == pytest.approx(100.1 * MS)  # the period survives the restart
    assert phase.observe(1_451 * MS) and phase.period_ns == pytest.approx(100.1 * MS)
    wrong = CounterPhase(first_ns=0, last_ns=0, period_ns=T_NS)
    assert not wrong.observe(round(12 * 120 * MS))  # 12 "periods" of 120 ms: implausible
    assert math.isclose(wrong.period_ns, T_NS)


def test_sparse_reads_are_whole_update_periods_and_never_denser_than_the_poll_factor():
    tracker = CounterTracker(period_s=0.1)
    s = 1e9
    assert tracker.read_interval_ns(1.0, 0.02) == pytest.approx(0.1 * s)  # every update
    assert tracker.read_interval_ns(1.0, 0.02, 1.0) == pytest.approx(1.0 * s)
    assert tracker.read_interval_ns(1.0, 0.02, 0.96) == pytest.approx(1.0 * s)  # 10 updates
    assert tracker.read_interval_ns(1.0, 0.02, 0.03) == pytest.approx(0.1 * s)  # at least one
    assert tracker.read_interval_ns(20.0, 0.02, 1.0) == pytest.approx(2.0 * s)  # serve's idle
    assert tracker.read_interval_ns(1.0, 0.5) == pytest.approx(0.5 * s)  # the floor
    assert tracker.resync_start_ns(123) == 123  # no phase yet: start now
