"""Live power and energy kept incrementally (LiveSource), checked against the core engine.

The analysis integrates a whole trace with ``core.profile.PowerProfile``; the live exporter
integrates sample by sample. Both must agree on every trace, however it is chunked.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infergy.core.profile import PowerProfile
from infergy.core.trace import NS_PER_S, Semantics, Trace
from infergy.exporters.live_power import LiveSource, split_source

MS = 1_000_000


def feed(
    live: LiveSource, t_ns: np.ndarray, v: np.ndarray, chunks: list[int] | None = None
) -> None:
    cuts = sorted({0, t_ns.size, *(c % (t_ns.size + 1) for c in chunks or [])})
    for a, b in itertools.pairwise(cuts):
        live.add(t_ns[a:b], v[a:b])


def test_split_source_names() -> None:
    assert split_source("gpu0", Semantics.COUNTER) == ("gpu0", "counter")
    assert split_source("gpu3.samples", Semantics.INSTANT) == ("gpu3", "samples")
    assert split_source("gpu3.avg", Semantics.INTERVAL_MEAN) == ("gpu3", "avg")
    assert split_source("cpu.dram", Semantics.COUNTER) == ("cpu", "dram")
    assert split_source("ac", Semantics.INTERVAL_MEAN) == ("ac", "mean")
    assert split_source("sim", Semantics.INSTANT) == ("sim", "instant")


def test_counter_rate_and_energy() -> None:
    live = LiveSource(Semantics.COUNTER, 100 * MS, window_s=1.0)
    t = np.arange(0, 31) * 100 * MS  # 3 s of readings at 10 Hz, 250 W
    live.add(t, 1e6 + 250.0 * t / NS_PER_S)
    assert live.energy_j == pytest.approx(750.0)
    assert live.power_w() == pytest.approx(250.0)
    # a reset (driver reload) is not counted, the counter goes on from its new value
    live.add(np.array([3100, 3200]) * MS, np.array([10.0, 35.0]))
    assert live.resets == 1
    assert live.energy_j == pytest.approx(775.0)
    # GPU lost: a NaN, then readings again; neither interval touching the NaN counts
    live.add(np.array([3300, 3400, 3500]) * MS, np.array([math.nan, 100.0, 125.0]))
    assert live.energy_j == pytest.approx(800.0)


def test_window_follows_a_step() -> None:
    live = LiveSource(Semantics.INSTANT, 20 * MS, window_s=1.0)
    t = np.arange(0, 251) * 20 * MS  # 5 s at 50 Hz: 100 W then 300 W from 3 s
    v = np.where(t < 3 * NS_PER_S, 100.0, 300.0)
    live.add(t[:150], v[:150])
    assert live.power_w() == pytest.approx(100.0)
    live.add(t[150:], v[150:])
    assert live.power_w() == pytest.approx(300.0)  # the window no longer reaches the old level


def test_interval_mean_latest_value_and_gap_not_zero() -> None:
    live = LiveSource(Semantics.INTERVAL_MEAN, NS_PER_S, window_s=1.0)
    assert live.power_w() is None and not live.has_energy
    live.add(np.array([1, 2, 3]) * NS_PER_S, np.array([500.0, 510.0, 520.0]))
    assert live.power_w() == pytest.approx(520.0)
    assert live.energy_j == pytest.approx(1530.0)
    # 10 s without samples, then one: it covers its own period only; power is its value
    live.add(np.array([13]) * NS_PER_S, np.array([400.0]))
    assert live.power_w() == pytest.approx(400.0)
    assert live.covered_ns == 4 * NS_PER_S


def test_instant_gap_is_left_out() -> None:
    live = LiveSource(Semantics.INSTANT, 20 * MS, window_s=1.0)
    live.add(np.array([0, 20, 40]) * MS, np.array([100.0, 100.0, math.nan]))
    live.add(np.array([60, 80, 500, 520]) * MS, np.array([200.0, 200.0, 300.0, 300.0]))
    # covered: 0-20 (100 W), 60-80 (200 W), 500-520 (300 W); 80-500 is a gap (> 2 periods)
    assert live.covered_ns == 60 * MS
    assert live.energy_j == pytest.approx(0.02 * (100 + 200 + 300))
    assert live.power_w() == pytest.approx(200.0)


def test_repeated_samples_are_ignored() -> None:
    live = LiveSource(Semantics.COUNTER, 100 * MS)
    t = np.arange(5) * 100 * MS
    live.add(t, np.arange(5) * 10.0)
    live.add(t[2:], np.arange(2, 5) * 10.0)  # an overlapping read
    assert live.energy_j == pytest.approx(40.0)


@st.composite
def traces(draw: st.DrawFn) -> tuple[Trace, list[int]]:
    semantics = draw(st.sampled_from(list(Semantics)))
    n = draw(st.integers(2, 60))
    period = 20 * MS
    steps = draw(st.lists(st.sampled_from([1, 1, 1, 2, 3, 7]), min_size=n, max_size=n))
    t = np.cumsum(np.array(steps, dtype=np.int64) * period)
    if semantics is Semantics.COUNTER:
        inc = draw(st.lists(st.floats(-5.0, 20.0), min_size=n, max_size=n))
        v = 1000.0 + np.cumsum(inc)
    else:
        v = np.array(draw(st.lists(st.floats(0.0, 700.0), min_size=n, max_size=n)))
    for i in draw(st.lists(st.integers(0, n - 1), max_size=3)):
        v[i] = math.nan
    chunks = draw(st.lists(st.integers(0, n), max_size=5))
    return Trace(t, v, semantics, period), chunks


@given(traces())
def test_energy_matches_the_core_engine_however_chunked(case: tuple[Trace, list[int]]) -> None:
    trace, chunks = case
    live = LiveSource(trace.semantics, trace.nominal_period_ns, window_s=0.2)
    feed(live, trace.t_ns, trace.values, chunks)
    profile = PowerProfile.of(trace)
    if profile.start_s.size == 0:
        assert not live.has_energy
        return
    end = np.array([profile.end_s[-1]])
    assert live.energy_j == pytest.approx(float(profile.cumulative_j(end)[0]), rel=1e-9, abs=1e-9)
    assert live.covered_ns / NS_PER_S == pytest.approx(float(profile.covered_s(end)[0]), abs=1e-9)
    assert live.resets == profile.resets
    # live power is the mean over the newest covered stretch: within the range of the values
    power = live.power_w()
    assert power is not None
    lo, hi = float(np.min(profile.p0_w)), float(np.max(profile.p0_w))
    assert lo - 1e-6 <= power <= hi + 1e-6 or trace.semantics is Semantics.INSTANT


@pytest.mark.parametrize("semantics", list(Semantics))
def test_invalid_samples_keep_no_source_live(semantics: Semantics) -> None:
    # an unplugged analyzer's bridge keeps sending missed samples (NaN here): they are
    # samples, but not readings, so they must not make the last reading look fresh
    live = LiveSource(semantics, 1000 * MS)
    t = np.arange(1, 6, dtype=np.int64) * 1000 * MS
    live.add(t, np.array([200.0, 400.0, 600.0, 800.0, 1000.0]))
    last_reading = live.last_valid_t_ns
    assert last_reading == t[-1]
    live.add(t[-1] + t[:3], np.full(3, np.nan))
    assert live.last_t_ns == t[-1] + t[2]
    assert live.last_valid_t_ns == last_reading
