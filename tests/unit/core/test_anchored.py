"""Counter-anchored energy against analytic ground truth (never against its own output).

The curve, consumed through the unchanged core (``window_energy``, ``PowerProfile``,
``InFlight``, ``LiveSource``): exact between counter reads, within a tight bound over any window,
conserving per-query energy, flagging a sensor whose gain is not the counter's, shrinking
aliased shapes. The truth and its counter and samples are in ``anchored_truth``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infergy.core.anchored import anchor
from infergy.core.attribution import InFlight
from infergy.core.energy import window_energy
from infergy.core.profile import PowerProfile
from infergy.core.trace import QueryLog, Semantics, Trace, Window
from infergy.errors import TraceError
from infergy.exporters.live_power import LiveSource
from tests.synth import Bursty
from tests.unit.core.anchored_truth import (
    DURATION_S,
    H_NS,
    H_S,
    Q_J,
    Ramps,
    S,
    anchored_j,
    counter_trace,
    edge_bound_j,
    periodic_bursts,
    read_times_ns,
    rel_s,
    samples_trace,
    setup_case,
    single_stream,
    tight_edge_bound_j,
    to_ns,
    truth_j,
    window_errors,
)

# -- exactness at reads, and every interval integrating to its delta ---------------------------


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**20),
    gain=st.sampled_from([1.0, 0.97, 1.05]),
    part_time=st.booleans(),
    load=st.sampled_from(["bursty", "periodic"]),
)
def test_window_energy_between_counter_reads_is_the_exact_integral(seed, gain, part_time, load):
    rng = np.random.default_rng(seed)
    sig = Bursty.random(rng, DURATION_S + 1) if load == "bursty" else periodic_bursts(700, 90, 0.07)
    reads = read_times_ns(rng)
    curve = anchor(
        counter_trace(sig.energy, reads),
        samples_trace(sig.power, rng, gain=gain, noise=0.02, part_time=part_time),
    )
    for _ in range(20):
        i, j = np.sort(rng.choice(reads.size, 2, replace=False))
        truth = truth_j(sig.energy, reads[i], reads[j])
        got = anchored_j(curve, reads[i], reads[j])
        assert got == pytest.approx(truth, abs=Q_J + 1e-9 * truth), (
            f"window [read {i}, read {j}]: anchored {got:.6f} J vs exact {truth:.6f} J"
        )
    prof = PowerProfile.of(curve.trace)
    per_interval = prof.energy_j(reads[:-1], reads[1:])
    exact = np.diff(counter_trace(sig.energy, reads).values)
    np.testing.assert_allclose(per_interval, exact, rtol=1e-9, atol=1e-9)


def test_the_curve_is_monotonic_and_keeps_the_raw_counter_value_at_every_read():
    rng = np.random.default_rng(3)
    sig = Bursty.random(rng, DURATION_S + 1)
    reads = read_times_ns(rng)
    counter = counter_trace(sig.energy, reads)
    curve = anchor(counter, samples_trace(sig.power, rng, gain=0.9, noise=0.05))
    assert np.all(np.diff(curve.trace.values) >= 0), "the anchored counter decreased somewhere"
    at_reads = np.searchsorted(curve.trace.t_ns, reads)
    np.testing.assert_array_equal(curve.trace.values[at_reads], counter.values)
    assert curve.trace.semantics is Semantics.COUNTER
    assert curve.trace.nominal_period_ns == H_NS


# -- arbitrary windows ----------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**20), gain=st.sampled_from([1.0, 0.97, 1.1]))
def test_exact_shape_gives_exact_energy_over_any_window(seed, gain):
    """Piecewise-linear P with knots on the sample grid: the samples' shape is exact."""
    rng = np.random.default_rng(seed)
    sig = Ramps(rng.uniform(80.0, 700.0, int(DURATION_S / H_S) + 2))
    reads = read_times_ns(rng)
    curve = anchor(counter_trace(sig.energy, reads), samples_trace(sig.power, rng, gain=gain))
    for _ in range(20):
        a, b = np.sort(rng.uniform(1.0, DURATION_S - 1.0, 2))
        a_ns, b_ns = int(to_ns(a)), int(to_ns(b))
        truth, got = truth_j(sig.energy, a_ns, b_ns), anchored_j(curve, a_ns, b_ns)
        # counter quantization moves each edge interval's scale by <= 1 mJ / delta; within a
        # 20-ms segment the curve is a chord of the exact ramp integral (<= dP h / 8 per edge)
        slack = 4 * Q_J + 2 * 620.0 * H_S / 8 + 1e-9 * truth
        assert abs(got - truth) <= slack, f"[{a:.4f}, {b:.4f}] s: {got - truth:+.4f} J off"


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**20),
    gain=st.sampled_from([1.0, 0.97]),
    part_time=st.booleans(),
    noise=st.sampled_from([0.0, 0.02]),
)
def test_arbitrary_windows_stay_within_a_bound_that_shrinks_with_dense_edge_reads(
    seed, gain, part_time, noise
):
    """The error is within the tight (actual-shape) bound, and the worst-case bound shrinks."""
    rng = np.random.default_rng(seed)
    sig = Bursty.random(rng, DURATION_S + 1) if seed % 2 else periodic_bursts(700, 90, 0.07)
    h_eff = 2 * H_S if part_time else H_S
    edges = np.sort(rng.uniform(2.0, DURATION_S - 2.0, 2))
    samples = samples_trace(sig.power, rng, gain=gain, noise=noise, part_time=part_time)
    bounds = {}
    for dense in (False, True):
        reads = read_times_ns(rng, tuple(edges) if dense else ())
        curve = anchor(counter_trace(sig.energy, reads), samples, shrink=False)  # pure shape
        a_ns, b_ns = int(to_ns(edges[0])), int(to_ns(edges[1]))
        err = anchored_j(curve, a_ns, b_ns) - truth_j(sig.energy, a_ns, b_ns)
        tight = sum(tight_edge_bound_j(sig.energy, samples, gain, reads, x) for x in (a_ns, b_ns))
        assert abs(err) <= tight, f"dense={dense}: error {err:+.4f} J beyond {tight:.4f} J"
        bound = sum(edge_bound_j(sig, reads, x, h_eff, noise) for x in (a_ns, b_ns))
        assert abs(err) <= bound, f"dense={dense}: error {err:+.3f} J beyond the bound {bound:.3f}"
        bounds[dense] = bound
    assert bounds[True] < bounds[False], f"dense edge reads did not tighten the bound: {bounds}"


# -- per-query attribution and live power ----------------------------------------------------


def test_per_query_attribution_over_the_anchored_curve_conserves_the_window_energy():
    rng = np.random.default_rng(11)
    sig = Bursty.random(rng, DURATION_S + 1)
    reads = read_times_ns(rng)
    curve = anchor(counter_trace(sig.energy, reads), samples_trace(sig.power, rng, gain=0.97))
    first, last = reads[5], reads[50]
    issue = np.sort(rng.integers(first, last, 400))
    issue[0] = first
    complete = np.minimum(issue + rng.integers(1_000_000, 400_000_000, issue.size), last)
    complete[-1] = last  # the window is [first issue, last completion], both at reads
    queries = QueryLog(issue, complete, rng.integers(1, 9, issue.size))
    win = Window.of_queries(queries)
    qe = InFlight.of(queries).apportion(PowerProfile.of(curve.trace), win)
    assert qe.per_query_j.sum() + qe.unattributed_j == pytest.approx(qe.window_j, rel=1e-9)
    assert np.all(qe.per_query_j >= 0), "a query got negative energy"
    assert qe.window_j == pytest.approx(truth_j(sig.energy, first, last), abs=Q_J)


def test_per_query_energy_follows_the_truth_where_the_plain_counter_cannot():
    """One query per 200-ms burst: each query's true energy is its burst."""
    rng = np.random.default_rng(5)
    sig = periodic_bursts(650.0, 85.0, 0.05)
    reads = read_times_ns(rng)
    counter = counter_trace(sig.energy, reads)
    curve = anchor(counter, samples_trace(sig.power, rng, gain=0.97, noise=0.02))
    busy = sig.edges_s[:-1][sig.level_w == 650.0]
    busy = busy[(busy > 2.0) & (busy < DURATION_S - 2.0)]
    queries = QueryLog(to_ns(busy), to_ns(busy + 0.2), np.ones(busy.size, dtype=np.int64))
    win = Window.of_queries(queries)
    truth = 650.0 * 0.2
    anchored = InFlight.of(queries).apportion(curve.profile, win).per_query_j
    plain = InFlight.of(queries).apportion(PowerProfile.of(counter), win).per_query_j
    err_anchored = float(np.median(np.abs(anchored / truth - 1)))
    err_plain = float(np.median(np.abs(plain / truth - 1)))
    assert err_anchored < 0.05, f"anchored per-query energy off by {err_anchored:.1%} (median)"
    assert err_anchored < err_plain / 4, f"anchored {err_anchored:.1%} vs counter {err_plain:.1%}"


def test_live_power_of_the_anchored_curve_is_the_true_mean_power():
    rng = np.random.default_rng(8)
    sig = Ramps(rng.uniform(80.0, 700.0, int(DURATION_S / H_S) + 2))
    reads = read_times_ns(rng)
    curve = anchor(counter_trace(sig.energy, reads), samples_trace(sig.power, rng, gain=1.08))
    stop = np.searchsorted(curve.trace.t_ns, reads[30], side="right")
    live = LiveSource(Semantics.COUNTER, curve.trace.nominal_period_ns, window_s=0.5)
    live.add(curve.trace.t_ns[:stop], curve.trace.values[:stop])
    t = curve.trace.t_ns[:stop]
    start = t[t <= t[-1] - S // 2][-1]  # LiveSource's window start: newest knot a window back
    expected = truth_j(sig.energy, start, t[-1]) / ((t[-1] - start) / S)
    assert live.power_w() == pytest.approx(expected, rel=1e-4), "live power off the true mean"


# -- scale drift -----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**20),
    gain=st.sampled_from([0.97, 0.985, 1.04]),
    part_time=st.booleans(),
    load=st.sampled_from(["bursty", "periodic"]),
)
def test_scale_drift_is_detected_when_the_sensor_gain_is_not_one(seed, gain, part_time, load):
    rng = np.random.default_rng(seed)
    sig = Bursty.random(rng, DURATION_S + 1) if load == "bursty" else periodic_bursts(700, 90, 0.11)
    curve = anchor(
        counter_trace(sig.energy, read_times_ns(rng)),
        samples_trace(sig.power, rng, gain=gain, noise=0.02, part_time=part_time),
    )
    s = curve.scale
    assert s.scale is not None and s.uncertainty is not None
    assert abs(s.scale - 1 / gain) <= 4 * s.uncertainty, (
        f"scale {s.scale:.5f} +- {s.uncertainty:.5f} is not 1/gain = {1 / gain:.5f}"
    )
    assert s.drifted(tolerance_rel=0.0), f"gain {gain} not flagged: {s}"
    if abs(1 / gain - 1) > 0.02:
        assert s.drifted(), f"gain {gain} not flagged at the default tolerance: {s}"
        assert any("disagree" in p for p in curve.problems)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**20),
    part_time=st.booleans(),
    noise=st.sampled_from([0.0, 0.03]),
    load=st.sampled_from(["bursty", "periodic"]),
)
def test_scale_drift_is_not_flagged_for_a_true_sensor(seed, part_time, noise, load):
    rng = np.random.default_rng(seed)
    sig = Bursty.random(rng, DURATION_S + 1) if load == "bursty" else periodic_bursts(700, 90, 0.13)
    curve = anchor(
        counter_trace(sig.energy, read_times_ns(rng)),
        samples_trace(sig.power, rng, noise=noise, part_time=part_time),
    )
    assert curve.scale.intervals >= 55
    assert not curve.scale.drifted(tolerance_rel=0.0), f"a gain-1 sensor flagged: {curve.scale}"
    assert not any("disagree" in p for p in curve.problems)


def test_aliased_millisecond_queries_are_shrunk_toward_linear_interpolation():
    """20-ms instants of 2-ms queries are noise around the mean, not shape: do not imprint it."""
    rng = np.random.default_rng(31)
    sig = single_stream(rng)
    counter = counter_trace(sig.energy, read_times_ns(rng))
    samples = samples_trace(sig.power, rng, gain=0.97, noise=0.005)
    curve, raw = anchor(counter, samples), anchor(counter, samples, shrink=False)
    weights = curve.intervals.shape_weight
    assert np.median(weights) < 0.2, f"aliasing kept as shape: median weight {np.median(weights)}"
    assert curve.noise_w is not None and 60 < curve.noise_w < 200  # ~binary 95 / 340 W noise
    assert any("mostly noise" in p for p in curve.problems), curve.problems
    e_curve, e_raw = (
        window_errors(curve, sig, np.random.default_rng(1)),
        window_errors(raw, sig, np.random.default_rng(1)),
    )
    e_counter = window_errors(counter, sig, np.random.default_rng(1))
    assert np.median(e_curve) < np.median(e_raw) / 2, "shrinking did not reduce the error"
    assert np.median(e_curve) < 1.5 * np.median(e_counter), (
        f"anchored {np.median(e_curve):.3f} J vs linear counter {np.median(e_counter):.3f} J"
    )


def test_burst_shapes_far_above_the_noise_are_kept():
    rng = np.random.default_rng(32)
    sig = periodic_bursts(700.0, 90.0, 0.07)
    reads = read_times_ns(rng)
    curve = anchor(
        counter_trace(sig.energy, reads), samples_trace(sig.power, rng, gain=0.97, noise=0.01)
    )
    assert curve.noise_w is not None
    assert np.min(curve.intervals.shape_weight) > 0.97, curve.intervals.shape_weight.min()
    assert not any("mostly noise" in p for p in curve.problems), curve.problems


def test_zero_power_stretches_on_a_huge_counter_never_read_as_resets():
    """Flat stretches inside intervals on a counter near 1e9 J: float rounding stays monotonic."""
    rng = np.random.default_rng(9)
    sig = periodic_bursts(650.0, 0.0, 0.013, period_s=0.31)
    reads = read_times_ns(rng)
    cum = 1e9 + sig.energy(np.zeros(reads.size), rel_s(reads))
    counter = Trace(reads, np.floor(cum * 1000) / 1000, Semantics.COUNTER, 100_000_000)
    curve = anchor(counter, samples_trace(sig.power, rng, gain=1.3, noise=0.1))
    assert curve.resets == 0
    assert PowerProfile.of(curve.trace).resets == 0, "rounding turned a flat stretch into a reset"
    assert np.all(np.diff(curve.trace.values) >= 0)


# -- inputs ----------------------------------------------------------------------------------


def test_wrong_semantics_are_refused_with_what_was_given():
    *_, counter, samples = setup_case()
    with pytest.raises(TraceError, match="instant"):
        anchor(samples, samples)
    with pytest.raises(TraceError, match="got a counter"):
        anchor(counter, counter)


def test_a_single_read_anchors_nothing_and_says_so():
    _, _, reads, counter, samples = setup_case()
    one = Trace(reads[:1], counter.values[:1], Semantics.COUNTER, counter.nominal_period_ns)
    curve = anchor(one, samples)
    assert len(curve.intervals) == 0 and curve.scale.scale is None
    assert window_energy(curve.trace, Window(int(reads[0]), int(reads[0]) + S)).covered_s == 0
    assert any("nothing can be anchored" in p for p in curve.problems)
