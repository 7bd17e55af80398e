"""Clock offsets: bracketing and cross-correlation on synthetic pairs with known truth."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infergy.core.clock import offset_by_bracketing, offset_by_xcorr
from infergy.core.profile import PowerProfile
from infergy.core.trace import NS_PER_S, Semantics, Trace
from tests.synth import Bursty, analyzer_trace, gpu_instant_trace

T0 = 1_750_000_000 * NS_PER_S


def test_bracketing_median_and_half_round_trip():
    true_offset = 700_000_000
    send = np.array([0, 10, 20, 30, 40, 50]) * 1_000_000 + T0
    rtt = np.array([2, 4, 2, 3, 50, 2]) * 1_000_000  # one slow exchange
    recv = send + rtt
    remote = send + rtt // 2 + true_offset
    est = offset_by_bracketing(send, remote, recv)
    assert est.accepted and est.method == "bracketing"
    assert est.offset_ns == true_offset
    assert est.uncertainty_ns == 1_250_000  # median rtt 2.5 ms / 2


def test_bracketing_needs_five_exchanges():
    est = offset_by_bracketing([0, 1], [0, 1], [1, 2])
    assert not est.accepted and "at least 5" in (est.reason or "")


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    offset_s=st.floats(-4.0, 4.0),
)
def test_xcorr_recovers_an_analyzer_offset_within_20_ms(seed, offset_s):
    """1 Hz interval-mean analyzer, 50 Hz instant GPU power, bursty load, noise on both."""
    rng = np.random.default_rng(seed)
    sig = Bursty.random(rng, 120.0)
    ac = analyzer_trace(sig, T0, offset_s, rest_w=150.0, noise=0.005, rng=rng)
    gpu = gpu_instant_trace(sig, T0, noise=0.03, rng=rng)
    est = offset_by_xcorr(PowerProfile.of(gpu), PowerProfile.of(ac))
    assert est.accepted, est.reason
    err_s = abs(est.offset_ns / NS_PER_S - offset_s)
    assert err_s <= 0.020
    assert est.peak_correlation is not None and est.peak_correlation > 0.9
    # the stated uncertainty covers the actual error and is of the right order
    assert err_s <= est.uncertainty_ns / NS_PER_S < 0.05


def test_the_documented_case_seven_tenths_ahead():
    rng = np.random.default_rng(7)
    sig = Bursty.random(rng, 90.0)
    ac = analyzer_trace(sig, T0, 0.7, rest_w=120.0, noise=0.01, rng=rng)
    gpu = gpu_instant_trace(sig, T0, noise=0.02, rng=rng)
    est = offset_by_xcorr(PowerProfile.of(gpu), PowerProfile.of(ac))
    assert est.offset_ms == pytest.approx(700.0, abs=20.0)


def test_xcorr_rejects_unrelated_signals():
    rng = np.random.default_rng(3)
    a = Bursty.random(rng, 120.0)
    b = Bursty.random(rng, 120.0)
    ac = analyzer_trace(a, T0, 0.0, rest_w=100.0, noise=0.01, rng=rng)
    gpu = gpu_instant_trace(b, T0, noise=0.02, rng=rng)
    est = offset_by_xcorr(PowerProfile.of(gpu), PowerProfile.of(ac))
    assert not est.accepted
    assert est.reason


def test_xcorr_rejects_a_flat_load():
    t = T0 + np.arange(0, 100) * NS_PER_S
    flat = Trace(t, np.full(100, 300.0), Semantics.INTERVAL_MEAN, NS_PER_S)
    g = T0 + np.arange(0, 5000) * (NS_PER_S // 50)
    gpu = Trace(g, np.full(5000, 200.0), Semantics.INSTANT, NS_PER_S // 50)
    est = offset_by_xcorr(PowerProfile.of(gpu), PowerProfile.of(flat))
    assert not est.accepted


def test_xcorr_rejects_sources_that_do_not_overlap():
    rng = np.random.default_rng(5)
    sig = Bursty.random(rng, 60.0)
    ac = analyzer_trace(sig, T0 + 3600 * NS_PER_S, 0.0, rest_w=100.0, noise=0.0, rng=rng)
    gpu = gpu_instant_trace(sig, T0, noise=0.0, rng=rng)
    est = offset_by_xcorr(PowerProfile.of(gpu), PowerProfile.of(ac))
    assert not est.accepted and "overlap" in (est.reason or "")
