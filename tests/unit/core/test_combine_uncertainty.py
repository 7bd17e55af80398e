"""Summing GPU traces on a common grid, and the uncertainty parts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infergy.core.combine import sum_traces
from infergy.core.energy import window_energy
from infergy.core.profile import PowerProfile
from infergy.core.trace import NS_PER_S, Semantics, Trace, Window
from infergy.core.uncertainty import COUNTER_QUANTUM_J, energy_uncertainty
from infergy.errors import TraceError

S = NS_PER_S
T0 = 1_750_000_000 * S


def instant(level, period_s=0.02, start_s=0.0, end_s=30.0):
    t = T0 + np.round(np.arange(start_s, end_s + 1e-9, period_s) * S).astype(np.int64)
    return Trace(t, np.full(t.size, float(level)), Semantics.INSTANT, round(period_s * S))


def counter(level, period_s=0.1, end_s=30.0):
    t = T0 + np.round(np.arange(0.0, end_s + 1e-9, period_s) * S).astype(np.int64)
    return Trace(t, 1e5 + level * (t - T0) / S, Semantics.COUNTER, round(period_s * S))


@settings(max_examples=25, deadline=None)
@given(levels=st.lists(st.floats(10.0, 700.0), min_size=2, max_size=8), a=st.floats(1.0, 10.0))
def test_sum_of_mixed_semantics_conserves_energy(levels, a):
    traces = [instant(w) if i % 2 else counter(w) for i, w in enumerate(levels)]
    total = sum_traces(traces)
    assert total.semantics is Semantics.INTERVAL_MEAN
    assert total.nominal_period_ns == S // 50
    win = Window(T0 + round(a * S), T0 + round((a + 15.0) * S))
    assert window_energy(total, win).energy_j == pytest.approx(sum(levels) * 15.0, rel=1e-9)


def test_sum_is_invalid_where_any_gpu_is_missing():
    a = instant(100.0)
    b = instant(50.0, start_s=10.0)  # the second GPU starts late
    total = sum_traces([a, b])
    we = window_energy(total, Window(T0 + 5 * S, T0 + 20 * S))
    assert we.coverage == pytest.approx(10.0 / 15.0, abs=0.002)
    assert we.energy_j == pytest.approx(150.0 * 10.0, rel=2e-3)


def test_sum_rejects_nothing():
    with pytest.raises(TraceError):
        sum_traces([])


def test_analyzer_part_is_the_correlated_sum_of_sample_uncertainties():
    t = T0 + np.arange(0, 11) * S
    w = np.full(11, 200.0)
    u = np.full(11, 0.005)
    tr = Trace(t, w, Semantics.INTERVAL_MEAN, S, uncertainty=u)
    parts = energy_uncertainty(PowerProfile.of(tr), Window(T0, T0 + 10 * S))
    assert parts.analyzer_j == pytest.approx(0.005 * 200.0 * 10.0)
    # each edge: 200 W x 1 s; two edges added in quadrature
    assert parts.edges_j == pytest.approx(np.hypot(200.0, 200.0))
    assert parts.quantization_j is None and parts.clock_offset_j is None
    assert parts.total_j == pytest.approx(np.hypot(10.0, np.hypot(200.0, 200.0)))


def test_counter_parts_and_clock_offset_part():
    tr = counter(300.0)
    win = Window(T0 + 5 * S, T0 + 25 * S)
    parts = energy_uncertainty(
        PowerProfile.of(tr), win, update_period_ns=S // 10, offset_uncertainty_ns=10_000_000
    )
    assert parts.quantization_j == COUNTER_QUANTUM_J
    assert parts.edges_j == pytest.approx(np.hypot(30.0, 30.0))
    assert parts.clock_offset_j == pytest.approx(0.0, abs=1e-9)  # flat power: shift costs nothing
    step = Trace(
        T0 + np.arange(0, 31) * S,
        np.where(np.arange(31) < 15, 100.0, 400.0),
        Semantics.INTERVAL_MEAN,
        S,
    )
    p = energy_uncertainty(
        PowerProfile.of(step), Window(T0 + 5 * S, T0 + 25 * S), offset_uncertainty_ns=20_000_000
    )
    assert p.clock_offset_j == pytest.approx(0.02 * 300.0)
