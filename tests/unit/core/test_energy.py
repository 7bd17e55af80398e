"""Window energy per semantics against analytic integrals (MEASUREMENT.md)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infergy.core.energy import idle_watts, mlperf_average_watts, window_energy
from infergy.core.trace import NS_PER_S, Semantics, Trace, Window
from infergy.errors import TraceError

S = NS_PER_S
T0 = 1_750_000_000 * S  # a 2025 epoch: realistic magnitudes for int64 ns


def sampled(t_s: np.ndarray, sem: Semantics, p, cum, period_s: float) -> Trace:
    """Sample power p(t) (or its integral cum(t)) the way a source of each semantics would."""
    t_ns = T0 + np.round(t_s * S).astype(np.int64)
    t_exact = (t_ns - T0) / S
    if sem is Semantics.INSTANT:
        v = p(t_exact)
    elif sem is Semantics.COUNTER:
        v = cum(t_exact) + 5_000.0  # a counter starts anywhere
    else:
        prev = np.concatenate(([t_exact[0] - period_s], t_exact[:-1]))
        v = (cum(t_exact) - cum(prev)) / (t_exact - prev)
    return Trace(t_ns, v, sem, round(period_s * S))


def window(a_s: float, b_s: float) -> Window:
    return Window(T0 + round(a_s * S), T0 + round(b_s * S))


windows = st.tuples(st.floats(0.5, 40.0), st.floats(1.0, 50.0)).map(
    lambda ab: (ab[0], min(ab[0] + ab[1], 59.0))
)


@settings(max_examples=60, deadline=None)
@given(
    sem=st.sampled_from(list(Semantics)),
    level=st.floats(1.0, 2000.0),
    period_s=st.sampled_from([0.02, 0.1, 1.0]),
    w=windows,
)
def test_constant_power_is_exact_for_every_semantics(sem, level, period_s, w):
    t = np.arange(0.0, 60.0 + 1e-9, period_s)
    tr = sampled(t, sem, lambda x: np.full_like(x, level), lambda x: level * x, period_s)
    we = window_energy(tr, window(*w))
    assert we.energy_j == pytest.approx(level * (w[1] - w[0]), rel=1e-9)
    assert we.coverage == pytest.approx(1.0)
    assert we.gaps_ns == ()


@settings(max_examples=60, deadline=None)
@given(
    sem=st.sampled_from(list(Semantics)),
    a=st.floats(301.0, 600.0),  # a + b t stays positive over 60 s
    b=st.floats(-5.0, 5.0),
    period_s=st.sampled_from([0.02, 0.1, 1.0]),
    w=windows,
    jitter=st.floats(0.0, 0.3),
    seed=st.integers(0, 2**16),
)
def test_ramp_with_jittered_timestamps(sem, a, b, period_s, w, jitter, seed):
    """Linear power: exact for instant; counter/interval-mean err only inside the edge intervals."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 60.0 + 1e-9, period_s)
    t = np.sort(t + rng.uniform(-jitter, jitter, t.size) * period_s)
    p = lambda x: a + b * x  # noqa: E731
    cum = lambda x: a * x + 0.5 * b * x * x  # noqa: E731
    tr = sampled(t, sem, p, cum, period_s)
    truth = cum(np.float64(w[1])) - cum(np.float64(w[0]))
    we = window_energy(tr, window(*w))
    h = period_s * (1 + jitter) * 2
    # step/linear-counter error inside one interval at each edge: <= |b| h^2 / 2 per edge
    bound = 1e-6 * abs(truth) + 1e-9 if sem is Semantics.INSTANT else abs(b) * h * h + 1e-6
    assert abs(we.energy_j - truth) <= bound


@settings(max_examples=40, deadline=None)
@given(
    sem=st.sampled_from(list(Semantics)),
    mean=st.floats(50.0, 500.0),
    amp=st.floats(0.0, 40.0),
    freq=st.floats(0.01, 0.3),
    w=windows,
)
def test_sinusoid_within_a_tenth_of_a_percent(sem, mean, amp, freq, w):
    period_s = 0.02
    om = 2 * np.pi * freq
    t = np.arange(0.0, 60.0 + 1e-9, period_s)
    p = lambda x: mean + amp * np.sin(om * x)  # noqa: E731
    cum = lambda x: mean * x - amp / om * np.cos(om * x)  # noqa: E731
    tr = sampled(t, sem, p, cum, period_s)
    truth = float(cum(np.float64(w[1])) - cum(np.float64(w[0])))
    assert window_energy(tr, window(*w)).energy_j == pytest.approx(truth, rel=1e-3)


@settings(max_examples=40, deadline=None)
@given(
    step_at=st.floats(5.0, 55.0),
    lo=st.floats(10.0, 100.0),
    hi=st.floats(100.0, 700.0),
    w=windows,
)
def test_step_in_an_interval_mean_trace(step_at, lo, hi, w):
    """An analyzer reporting exact 1-s means of a step: only edge intervals can err."""
    p = lambda x: np.where(x < step_at, lo, hi)  # noqa: E731
    cum = lambda x: np.where(x < step_at, lo * x, lo * step_at + hi * (x - step_at))  # noqa: E731
    tr = sampled(np.arange(0.0, 60.0 + 1e-9, 1.0), Semantics.INTERVAL_MEAN, p, cum, 1.0)
    truth = float(cum(np.float64(w[1])) - cum(np.float64(w[0])))
    err = abs(window_energy(tr, window(*w)).energy_j - truth)
    assert err <= 2 * (hi - lo) * 1.0 + 1e-6
    if float(w[0]).is_integer() and float(w[1]).is_integer():
        assert err == pytest.approx(0.0, abs=1e-6)


def test_gap_longer_than_twice_the_period_is_uncovered_and_listed():
    t = np.arange(0.0, 20.0 + 1e-9, 0.1)
    keep = (t < 8.0) | (t > 10.0)  # drop samples in (8, 10]: a 2.1 s hole between 7.9.. 10.1
    tr = sampled(t[keep], Semantics.INSTANT, lambda x: np.full_like(x, 100.0), None, 0.1)
    we = window_energy(tr, window(2.0, 18.0))
    gap_s = 10.1 - 7.9  # the segment between the samples around the hole is not interpolated
    assert we.coverage == pytest.approx(1 - gap_s / 16.0, abs=1e-9)
    assert we.energy_j == pytest.approx(100.0 * (16.0 - gap_s), rel=1e-9)
    assert len(we.gaps_ns) == 1
    (a, b) = we.gaps_ns[0]
    assert (a - T0) / S == pytest.approx(7.9) and (b - T0) / S == pytest.approx(10.1)


def test_short_gap_is_interpolated_not_a_gap():
    t = np.arange(0.0, 20.0 + 1e-9, 0.1)
    keep = np.abs(t - 5.0) > 0.05  # one missing instant sample: 0.2 s <= 2 x 0.1 s
    tr = sampled(t[keep], Semantics.INSTANT, lambda x: np.full_like(x, 50.0), None, 0.1)
    assert window_energy(tr, window(1.0, 19.0)).coverage == pytest.approx(1.0)


def test_interval_mean_after_a_long_gap_covers_only_its_nominal_period():
    t = np.array([1.0, 2.0, 3.0, 8.0, 9.0, 10.0])
    tr = Trace(T0 + (t * S).astype(np.int64), np.full(6, 10.0), Semantics.INTERVAL_MEAN, S)
    we = window_energy(tr, window(0.0, 10.0))
    # covered: (0,1],(1,2],(2,3] and (7,8],(8,9],(9,10]; the gap (3,7] is uncovered
    assert we.covered_s == pytest.approx(6.0)
    assert we.energy_j == pytest.approx(60.0)
    assert [((a - T0) / S, (b - T0) / S) for a, b in we.gaps_ns] == [(3.0, 7.0)]


def test_invalid_samples_are_gaps_not_zeros():
    t = np.arange(1.0, 11.0)
    v = np.full(10, 200.0)
    v[4] = np.nan  # e.g. PTD's -1 or -2, mapped to NaN by the parser
    tr = Trace(T0 + (t * S).astype(np.int64), v, Semantics.INTERVAL_MEAN, S)
    we = window_energy(tr, window(0.0, 10.0))
    assert we.energy_j == pytest.approx(1800.0)
    assert we.coverage == pytest.approx(0.9)
    assert we.invalid_samples == 1


@settings(max_examples=40, deadline=None)
@given(
    reset_at=st.integers(5, 50),
    level=st.floats(10.0, 500.0),
    base=st.floats(0.0, 1e6),
)
def test_counter_reset_loses_only_the_reset_interval(reset_at, level, base):
    t = np.arange(0.0, 60.0 + 1e-9, 1.0)
    c = base + level * t
    c[reset_at:] -= c[reset_at] - level * 0.25  # the counter restarts from a new small base
    tr = Trace(T0 + (t * S).astype(np.int64), c, Semantics.COUNTER, S)
    we = window_energy(tr, window(0.0, 60.0))
    assert we.resets == 1
    assert we.energy_j == pytest.approx(level * 59.0, rel=1e-9)
    assert we.covered_s == pytest.approx(59.0)
    assert len(we.gaps_ns) == 1


def test_counter_with_sparse_readings_stays_covered():
    t = np.array([0.0, 1.0, 9.0, 10.0])  # 8 s between readings: the counter still knows
    tr = Trace(T0 + (t * S).astype(np.int64), 100.0 * t, Semantics.COUNTER, S // 10)
    we = window_energy(tr, window(0.0, 10.0))
    assert we.energy_j == pytest.approx(1000.0)
    assert we.coverage == pytest.approx(1.0)


def test_window_outside_the_trace_has_no_coverage():
    t = np.arange(0.0, 10.0)
    tr = Trace(T0 + (t * S).astype(np.int64), np.full(10, 5.0), Semantics.INSTANT, S)
    we = window_energy(tr, window(20.0, 30.0))
    assert we.covered_s == 0.0 and we.energy_j == 0.0 and we.average_w is None
    assert we.samples == 0


def test_idle_watts_is_the_time_weighted_mean():
    t = np.arange(0.0, 10.0 + 1e-9, 0.5)
    tr = sampled(t, Semantics.INSTANT, lambda x: 40.0 + 2.0 * x, None, 0.5)
    assert idle_watts(tr, window(0.0, 10.0)) == pytest.approx(50.0)
    assert idle_watts(tr, window(100.0, 110.0)) is None


def test_mlperf_rule_on_a_hand_computed_fixture():
    """Strict inequalities at both ends; W <= 0 and invalid samples dropped; plain mean."""
    t_ms = np.array([0, 1000, 2000, 3000, 4000, 5000, 6000])
    w = np.array([900.0, 100.0, -1.0, 300.0, np.nan, 200.0, 999.0])
    tr = Trace(T0 + t_ms * 1_000_000, w, Semantics.INTERVAL_MEAN, S)
    # begin == the 0 ms sample and end == the 6000 ms sample: both excluded (strict)
    win = Window(T0, T0 + 6000 * 1_000_000)
    assert mlperf_average_watts(tr, win) == pytest.approx((100.0 + 300.0 + 200.0) / 3)
    counter = Trace(T0 + t_ms * 1_000_000, np.arange(7.0), Semantics.COUNTER, S)
    assert mlperf_average_watts(counter, win) is None


def test_trace_rejects_unsorted_and_mismatched_input():
    with pytest.raises(TraceError, match="strictly increasing"):
        Trace(np.array([2, 1]), np.array([1.0, 2.0]), Semantics.INSTANT, S)
    with pytest.raises(TraceError, match="samples but values"):
        Trace(np.array([1, 2]), np.array([1.0]), Semantics.INSTANT, S)
    with pytest.raises(TraceError, match="integer nanoseconds"):
        Trace(np.array([1.5, 2.5]), np.array([1.0, 2.0]), Semantics.INSTANT, S)
    tr, dropped = Trace.from_unsorted([3, 1, 1, 2], [3.0, 1.0, 1.5, 2.0], Semantics.INSTANT, S)
    assert dropped == 1 and tr.t_ns.tolist() == [1, 2, 3] and tr.values.tolist() == [1.5, 2.0, 3.0]
