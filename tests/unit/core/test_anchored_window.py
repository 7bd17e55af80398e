"""What an anchored curve did not anchor, and the uncertainty of its window energy.

Sample gaps, intervals without samples, counter resets, invalid reads and edges beyond the
reads, each against the truth in ``anchored_truth``; then the uncertainty parts of
``anchored_window`` (quantization at reads, the shape term, coverage of the actual error).
"""

from __future__ import annotations

import numpy as np
import pytest

from infergy.core.anchored import IntervalKind, anchor
from infergy.core.anchored_window import anchored_window
from infergy.core.energy import window_energy
from infergy.core.trace import Semantics, Trace, Window
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
    drop,
    read_times_ns,
    rel_s,
    samples_trace,
    setup_case,
    to_ns,
    trapezoid_j,
    truth_j,
)

# -- what was not anchored -------------------------------------------------------------------


def test_a_samples_gap_inside_an_interval_runs_at_the_counters_mean_power_there():
    _, _, reads, counter, samples = setup_case()
    k = 20
    g0, g1 = reads[k] + 100_000_000, reads[k] + 250_000_000  # reads are >= 0.4 s apart
    curve = anchor(counter, drop(samples, g0, g1), shrink=False)  # the samples' shape as it is
    assert curve.intervals.kind[k] == IntervalKind.PARTIAL
    assert np.count_nonzero(curve.intervals.kind == IntervalKind.PARTIAL) == 1
    delta = float(counter.values[k + 1] - counter.values[k])
    assert anchored_j(curve, reads[k], reads[k + 1]) == pytest.approx(delta, rel=1e-9)
    # the gap, from the last sample before it to the first after it, at the interval's mean
    s0, s1 = samples.t_ns[samples.t_ns < g0][-1], samples.t_ns[samples.t_ns > g1][0]
    mean_w = delta / ((reads[k + 1] - reads[k]) / S)
    assert anchored_j(curve, s0, s1) == pytest.approx(mean_w * (s1 - s0) / S, rel=1e-9)
    # the covered rest carries what the gap leaves of the delta, distributed like the samples
    rest_j = delta - mean_w * (s1 - s0) / S
    share = trapezoid_j(samples, reads[k], s0) / (
        trapezoid_j(samples, reads[k], s0) + trapezoid_j(samples, s1, reads[k + 1])
    )
    assert anchored_j(curve, reads[k], s0) == pytest.approx(rest_j * share, rel=1e-9)
    report = anchored_window(curve, Window(int(reads[k]), int(reads[k + 1])))
    assert report.coverage.linear_s == pytest.approx((s1 - s0) / S, abs=1e-9)
    assert report.coverage.intervals == {"partial": 1}
    inside = anchored_window(curve, Window(int(reads[k]), int(s0 + s1) // 2)).uncertainty
    assert inside.shape_j >= mean_w * (s1 - s0) / S, "the gap's unknown energy is not in shape"
    assert any("sample gaps" in p for p in curve.problems), curve.problems


def test_intervals_without_samples_fall_back_to_linear_counter_interpolation():
    _, _, reads, counter, samples = setup_case()
    curve = anchor(counter, drop(samples, reads[10] - H_NS, reads[13] + H_NS))
    kinds = curve.intervals.kind
    assert list(kinds[10:13]) == [IntervalKind.LINEAR] * 3
    assert kinds[9] == IntervalKind.PARTIAL and kinds[13] == IntervalKind.PARTIAL
    mid = reads[11] + (reads[12] - reads[11]) * 3 // 10  # off-centre: max(f, 1 - f) = 0.7
    delta = float(counter.values[12] - counter.values[11])
    assert anchored_j(curve, reads[11], mid) == pytest.approx(
        delta * (mid - reads[11]) / (reads[12] - reads[11]), rel=1e-9
    )
    report = anchored_window(curve, Window(int(reads[11]), int(mid)))
    assert report.coverage.linear_s == pytest.approx((mid - reads[11]) / S)
    assert report.coverage.shaped_s == 0.0
    f = (mid - reads[11]) / (reads[12] - reads[11])
    assert report.uncertainty.edges_j == pytest.approx(max(f, 1 - f) * delta, rel=1e-9)
    assert any("have no samples" in p for p in curve.problems), curve.problems


@pytest.mark.parametrize("bad", ["zero", "nan"])
def test_samples_without_energy_while_the_counter_rose_are_not_used(bad):
    _, _, reads, counter, samples = setup_case()
    w = samples.values.copy()
    inside = (samples.t_ns >= reads[30] - H_NS) & (samples.t_ns <= reads[31] + H_NS)
    w[inside] = 0.0 if bad == "zero" else np.nan
    curve = anchor(counter, Trace(samples.t_ns, w, Semantics.INSTANT, H_NS))
    assert curve.intervals.kind[30] == IntervalKind.LINEAR
    mid = (reads[30] + reads[31]) // 2
    delta = float(counter.values[31] - counter.values[30])
    frac = (mid - reads[30]) / (reads[31] - reads[30])
    assert anchored_j(curve, reads[30], mid) == pytest.approx(delta * frac, rel=1e-9)
    said = "with no energy" if bad == "zero" else "have no samples"
    assert any(said in p for p in curve.problems), curve.problems


def test_a_counter_reset_leaves_its_interval_uncovered_and_is_counted():
    _, sig, reads, counter, samples = setup_case()
    j = 25  # the driver reloaded between reads 24 and 25: the counter restarts near zero
    v = counter.values.copy()
    v[j:] = v[j:] - v[j] + 3.0
    curve = anchor(Trace(reads, v, Semantics.COUNTER, counter.nominal_period_ns), samples)
    assert curve.resets == 1
    assert curve.intervals.kind[j - 1] == IntervalKind.RESET
    win = Window(int(reads[j - 5]), int(reads[j + 5]))
    we = window_energy(curve.trace, win)
    assert we.resets == 1, "the window's reset count comes from the anchored trace"
    lost = truth_j(sig.energy, reads[j - 1], reads[j])
    truth = truth_j(sig.energy, reads[j - 5], reads[j + 5]) - lost
    assert we.energy_j == pytest.approx(truth, abs=3 * Q_J)
    assert we.gaps_ns == ((int(reads[j - 1]), int(reads[j])),)
    report = anchored_window(curve, win)
    assert report.coverage.uncovered_s == pytest.approx((reads[j] - reads[j - 1]) / S)
    assert report.coverage.intervals["reset"] == 1
    assert any("reset" in p for p in curve.problems)


def test_an_invalid_counter_read_is_a_gap_never_a_zero():
    _, sig, reads, counter, samples = setup_case()
    v = counter.values.copy()
    v[40] = np.nan  # the GPU was lost at that read
    curve = anchor(Trace(reads, v, Semantics.COUNTER, counter.nominal_period_ns), samples)
    assert list(curve.intervals.kind[39:41]) == [IntervalKind.LOST] * 2
    win = Window(int(reads[35]), int(reads[45]))
    we = window_energy(curve.trace, win)
    truth = truth_j(sig.energy, reads[35], reads[45]) - truth_j(sig.energy, reads[39], reads[41])
    assert we.energy_j == pytest.approx(truth, abs=3 * Q_J)
    assert we.coverage == pytest.approx(1 - (reads[41] - reads[39]) / (reads[45] - reads[35]))
    assert anchored_window(curve, win).coverage.intervals["lost"] == 2


def test_edges_beyond_the_first_and_last_read_are_extrapolated_and_say_so():
    rng = np.random.default_rng(4)
    sig = Ramps(rng.uniform(80.0, 700.0, int(DURATION_S / H_S) + 2))
    reads = read_times_ns(rng)
    counter = counter_trace(sig.energy, reads)
    samples = samples_trace(sig.power, rng, gain=0.93)
    a_ns, b_ns = int(reads[0] - 150_000_000), int(reads[-1] + 150_000_000)  # within samples
    curve = anchor(counter, samples)
    report = anchored_window(curve, Window(a_ns, b_ns))
    assert report.coverage.extrapolated_s == pytest.approx(0.3)
    truth = truth_j(sig.energy, a_ns, b_ns)
    # the scale of the nearest intervals is 1/gain to quantization; at each edge the curve is
    # the chord of the exact ramp integral inside one 20-ms segment (<= dP h / 8)
    assert anchored_j(curve, a_ns, b_ns) == pytest.approx(truth, abs=2 * 620 * H_S / 8 + 0.01)
    assert report.uncertainty.extrapolation_j is not None
    assert any("beyond the first or last" in p for p in report.problems)
    bare = anchor(counter, samples, extrapolate=False)
    we = window_energy(bare.trace, Window(a_ns, b_ns))
    assert we.coverage < 1.0
    assert anchored_window(bare, Window(a_ns, b_ns)).coverage.uncovered_s == pytest.approx(0.3)


# -- uncertainty parts -----------------------------------------------------------------------


def test_a_window_with_edges_at_reads_is_uncertain_by_its_quantization_only():
    _, _, reads, counter, samples = setup_case()
    u = anchored_window(anchor(counter, samples), Window(int(reads[3]), int(reads[50]))).uncertainty
    assert u.edges_j == 0.0 and u.shape_j == 0.0 and u.extrapolation_j is None
    assert u.quantization_j == pytest.approx(Q_J * np.sqrt(2))


def test_the_shape_term_shrinks_with_dense_edge_reads_and_vanishes_at_reads():
    rng = np.random.default_rng(21)
    sig = Bursty.random(rng, DURATION_S + 1)
    samples = samples_trace(sig.power, rng, gain=0.97, noise=0.02)
    sparse = read_times_ns(np.random.default_rng(22))  # the same reads as below without dense
    mids = (sparse[17:19].mean(), sparse[44:46].mean())  # edges mid-way between sparse reads
    edges = tuple(float(m) for m in rel_s(np.array(mids, dtype=np.int64)))
    win = Window(int(to_ns(edges[0])), int(to_ns(edges[1])))
    shape = {}
    for dense in (False, True):
        reads = read_times_ns(np.random.default_rng(22), edges if dense else ())
        curve = anchor(counter_trace(sig.energy, reads), samples)
        u = anchored_window(curve, win).uncertainty
        rel = curve.scale.spread / curve.scale.scale
        # rel * sqrt(energy before the edge * after it) within its interval, per edge (RSS)
        expected = 0.0
        for x in (win.start_ns, win.end_ns):
            k = int(np.searchsorted(reads, x, side="right")) - 1
            before = truth_j(sig.energy, reads[k], x)
            after = truth_j(sig.energy, x, reads[k + 1])
            expected += rel * rel * before * after
        assert u.shape_j == pytest.approx(np.sqrt(expected), rel=0.05, abs=0.01)
        shape[dense] = u.shape_j
    assert shape[True] < shape[False] / 3, (
        f"dense edge reads did not shrink the shape term: {shape}"
    )


def test_the_reported_uncertainty_covers_the_error_on_bursty_windows():
    hits, errors, totals = 0, [], []
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        sig = Bursty.random(rng, DURATION_S + 1)
        curve = anchor(
            counter_trace(sig.energy, read_times_ns(rng)),
            samples_trace(sig.power, rng, gain=0.97, noise=0.02, part_time=seed % 2 == 1),
        )
        for _ in range(50):
            a, b = np.sort(rng.uniform(1.0, DURATION_S - 1.0, 2))
            win = Window(int(to_ns(a)), int(to_ns(b)))
            err = anchored_j(curve, win.start_ns, win.end_ns) - truth_j(sig.energy, *to_ns([a, b]))
            total = anchored_window(curve, win).uncertainty.total_j
            hits += abs(err) <= total
            errors.append(abs(err))
            totals.append(total)
    assert hits >= 0.95 * 200, f"only {hits}/200 errors within the reported uncertainty"
    ratio = float(np.median(totals) / np.median(errors))
    assert ratio < 20, f"the uncertainty is {ratio:.0f}x the typical error: uselessly loose"
