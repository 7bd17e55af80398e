"""Per-query energy: hand-computed cases and the conservation invariant."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infergy.core.attribution import InFlight
from infergy.core.profile import PowerProfile
from infergy.core.trace import NS_PER_S, QueryLog, Semantics, Trace, Window

S = NS_PER_S
T0 = 1_750_000_000 * S


def flat(level_w: float, end_s: float = 100.0, period_s: float = 0.01) -> PowerProfile:
    t = T0 + np.round(np.arange(0.0, end_s + 1e-9, period_s) * S).astype(np.int64)
    return PowerProfile.of(
        Trace(t, np.full(t.size, level_w), Semantics.INSTANT, round(period_s * S))
    )


def qlog(rows: list[tuple[float, float, int]]) -> QueryLog:
    a = np.array(rows, dtype=float)
    return QueryLog(
        T0 + np.round(a[:, 0] * S).astype(np.int64),
        T0 + np.round(a[:, 1] * S).astype(np.int64),
        a[:, 2].astype(np.int64),
    )


def test_hand_computed_overlap():
    """100 W. q0: [1, 3] 1 sample; q1: [2, 4] 3 samples. Window [1, 5]."""
    q = qlog([(1.0, 3.0, 1), (2.0, 4.0, 3)])
    qe = InFlight.of(q).apportion(flat(100.0), Window(T0 + S, T0 + 5 * S))
    # [1,2): q0 alone, 100 J. [2,3): 1:3 split of 100 J. [3,4): q1 alone. [4,5]: unattributed.
    assert qe.per_query_j == pytest.approx([100.0 + 25.0, 75.0 + 100.0])
    assert qe.unattributed_j == pytest.approx(100.0)
    assert qe.window_j == pytest.approx(400.0)


def test_power_varying_within_a_query_follows_the_power():
    t = T0 + np.arange(0, 11) * S
    w = np.array([0, 0, 0, 0, 0, 100, 100, 100, 100, 100, 100], dtype=float)
    prof = PowerProfile.of(Trace(t, w, Semantics.INTERVAL_MEAN, S))
    q = qlog([(0.0, 4.0, 1), (4.0, 10.0, 1)])
    qe = InFlight.of(q).apportion(prof, Window(T0, T0 + 10 * S))
    assert qe.per_query_j == pytest.approx([0.0, 600.0])


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 300),
    seed=st.integers(0, 2**20),
    multi=st.booleans(),
    pad=st.floats(0.0, 2.0),
)
def test_conservation_per_query_plus_unattributed_is_window_energy(n, seed, multi, pad):
    rng = np.random.default_rng(seed)
    issue = np.sort(rng.uniform(1.0, 60.0, n))
    latency = rng.exponential(0.5, n)
    samples = rng.integers(1, 9, n) if multi else np.ones(n, dtype=int)
    q = qlog([(i, i + lat, s) for i, lat, s in zip(issue, latency, samples, strict=True)])
    t = T0 + np.round(np.arange(0.0, 70.0, 0.02) * S).astype(np.int64)
    w = 80 + 200 * rng.random(t.size)
    prof = PowerProfile.of(Trace(t, w, Semantics.INSTANT, S // 50))
    win = Window.of_queries(q)
    win = Window(win.start_ns - round(pad * S), win.end_ns + round(pad * S))
    qe = InFlight.of(q).apportion(prof, win)
    assert qe.per_query_j.shape == (n,)
    assert np.all(qe.per_query_j >= -1e-9)
    assert qe.per_query_j.sum() + qe.unattributed_j == pytest.approx(qe.window_j, rel=1e-9)
    expected_window = prof.energy_j([win.start_ns], [win.end_ns])[0]
    assert qe.window_j == pytest.approx(expected_window, rel=1e-12)


def test_queries_beyond_the_window_only_get_energy_inside_it():
    q = qlog([(0.0, 10.0, 1)])
    qe = InFlight.of(q).apportion(flat(10.0), Window(T0 + 2 * S, T0 + 4 * S))
    assert qe.per_query_j == pytest.approx([20.0])
    assert qe.unattributed_j == pytest.approx(0.0, abs=1e-9)
