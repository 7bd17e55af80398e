"""Counter-anchored energy against analytic ground truth (never against its own output).

The truth is a known power function P(t): piecewise constant (bursty 200-ms busy/idle, random
bursts) or piecewise linear on the samples' grid (where 20-ms samples describe the shape
exactly). The counter is its exact integral read sparsely and quantized to 1 mJ as NVML gives
it; the samples are P at 20-ms instants times a sensor gain (biased, noisy, or part-time: a
sensor that only sees every other 20-ms slot and holds its value). The anchored curve is
consumed through the unchanged core (``window_energy``, ``PowerProfile``, ``InFlight``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infergy.core.anchored import AnchoredCurve, IntervalKind, anchor
from infergy.core.anchored_window import anchored_window
from infergy.core.attribution import InFlight
from infergy.core.energy import window_energy
from infergy.core.profile import PowerProfile
from infergy.core.trace import NS_PER_S, QueryLog, Semantics, Trace, Window
from infergy.errors import TraceError
from infergy.exporters.live_power import LiveSource
from tests.synth import Bursty

S = NS_PER_S
T0 = 1_750_000_000 * S
H_NS = 20_000_000  # the driver's sample period
H_S = H_NS / S
Q_J = 1e-3  # NVML's counter resolution
BASE_J = 987_654.321  # the counter starts anywhere
DURATION_S = 60.0


# -- ground truth -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ramps:
    """Piecewise-linear power with knots on the samples' 20-ms grid (samples see it exactly)."""

    knots_w: np.ndarray  # power at k * H_S

    def power(self, t_s: np.ndarray) -> np.ndarray:
        return np.interp(t_s, np.arange(self.knots_w.size) * H_S, self.knots_w)

    def energy(self, a_s: np.ndarray, b_s: np.ndarray) -> np.ndarray:
        grid = np.arange(self.knots_w.size) * H_S
        cum = np.concatenate(([0.0], np.cumsum(0.5 * (self.knots_w[1:] + self.knots_w[:-1]) * H_S)))

        def c(x: np.ndarray) -> np.ndarray:
            i = np.clip(np.floor(x / H_S).astype(int), 0, self.knots_w.size - 2)
            d = x - grid[i]
            slope = (self.knots_w[i + 1] - self.knots_w[i]) / H_S
            return cum[i] + self.knots_w[i] * d + 0.5 * slope * d * d

        return c(np.asarray(b_s, dtype=float)) - c(np.asarray(a_s, dtype=float))


def periodic_bursts(busy_w: float, idle_w: float, phase_s: float, period_s: float = 0.2) -> Bursty:
    """Busy/idle alternating every ``period_s`` (the 200-ms bursty load)."""
    edges = np.concatenate(([0.0], np.arange(phase_s, DURATION_S + 1.0, period_s)))
    levels = np.where(np.arange(edges.size - 1) % 2 == 0, busy_w, idle_w).astype(float)
    return Bursty(edges, levels, float(edges[-1]))


def transitions(sig: Bursty, a_s: float, b_s: float) -> int:
    """Steps of the piecewise-constant truth inside [a, b]."""
    e = sig.edges_s[1:-1]
    return int(np.searchsorted(e, b_s, side="right") - np.searchsorted(e, a_s, side="left"))


def rel_s(t_ns: np.ndarray) -> np.ndarray:
    return (np.asarray(t_ns, dtype=np.int64) - T0) / S


def to_ns(t_s: np.ndarray | float) -> np.ndarray:
    return T0 + np.round(np.asarray(t_s, dtype=float) * S).astype(np.int64)


def read_times_ns(
    rng: np.random.Generator, dense_at_s: tuple[float, ...] = (), dense_step_s: float = 0.1
) -> np.ndarray:
    """Counter reads every ~1 s (jittered), every ``dense_step_s`` within 0.5 s of each edge.

    The dense reads are off the edge by a random fraction of their step, as a meter that reads
    at the counter's own updates would be: the edge stays inside an interval.
    """
    t = np.arange(0.5, DURATION_S - 0.4, 1.0) + rng.uniform(-0.3, 0.3, 60)
    off = rng.uniform(0.1, 0.9) * dense_step_s
    dense = [e + off + np.arange(-0.5, 0.5 + 1e-9, dense_step_s) for e in dense_at_s]
    t = np.concatenate([t, *dense]) if dense else t
    return np.unique(to_ns(t[(t > 0.1) & (t < DURATION_S - 0.1)]))


def counter_trace(energy, reads_ns: np.ndarray) -> Trace:
    """The exact integral since t = 0 at each read, in whole mJ as NVML gives it."""
    cum_j = BASE_J + energy(np.zeros(reads_ns.size), rel_s(reads_ns))
    return Trace(reads_ns, np.floor(cum_j * 1000.0) / 1000.0, Semantics.COUNTER, 100_000_000)


def samples_trace(
    power,
    rng: np.random.Generator,
    *,
    gain: float = 1.0,
    noise: float = 0.0,
    part_time: bool = False,
    phase_ns: int = 0,
) -> Trace:
    """P at 20-ms instants times the sensor gain, with bounded noise, optionally part-time."""
    t_ns = T0 + phase_ns + np.arange(0, round(DURATION_S * S) - phase_ns, H_NS, dtype=np.int64)
    w = gain * power(rel_s(t_ns)) * (1.0 + noise * rng.uniform(-1.0, 1.0, t_ns.size))
    if part_time:  # sees every other slot, holds its value in between
        w[1::2] = w[0::2][: w[1::2].size]
    return Trace(t_ns, w, Semantics.INSTANT, H_NS)


def truth_j(energy, a_ns: int, b_ns: int) -> float:
    return float(energy(rel_s(np.array([a_ns])), rel_s(np.array([b_ns])))[0])


def anchored_j(curve: AnchoredCurve, a_ns: int, b_ns: int) -> float:
    """The anchored window energy through the unchanged engine (``window_energy``)."""
    return window_energy(curve.trace, Window(int(a_ns), int(b_ns))).energy_j


def trapezoid_j(samples: Trace, a_ns: int, b_ns: int) -> float:
    """The samples' own energy over [a, b] by the trapezoid rule (exact inside a segment)."""
    t, w = rel_s(samples.t_ns), samples.values
    cum = np.concatenate(([0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(t))))

    def c(x: float) -> float:
        i = int(np.clip(np.searchsorted(t, x, side="right") - 1, 0, t.size - 2))
        d, slope = x - t[i], (w[i + 1] - w[i]) / (t[i + 1] - t[i])
        return float(cum[i] + w[i] * d + 0.5 * slope * d * d)

    return c(float(rel_s(np.array([b_ns]))[0])) - c(float(rel_s(np.array([a_ns]))[0]))


def tight_edge_bound_j(
    energy, samples: Trace, gain: float, reads_ns: np.ndarray, x_ns: int
) -> float:
    """The error of the anchored energy up to ``x`` from the samples' actual shape errors.

    With X, Y the true energies over [t0, x] and [t0, t1] and the samples' integrals
    g (X + e1), g (Y + e2), the anchored split is Y (X + e1) / (Y + e2), whose error is exactly
    (Y e1 - X e2) / (Y + e2). Plus 1 mJ for each of the interval's reads, and the chord: inside
    the 20-ms segment holding x the curve is linear in energy while the trapezoid is quadratic
    (at most |dP| h / 8, times the interval's scale).
    """
    k = int(np.searchsorted(reads_ns, x_ns, side="right")) - 1
    if reads_ns[k] == x_ns:
        return Q_J
    t0, t1 = int(reads_ns[k]), int(reads_ns[k + 1])
    big_x, big_y = truth_j(energy, t0, x_ns), truth_j(energy, t0, t1)
    e1 = trapezoid_j(samples, t0, x_ns) / gain - big_x
    e2 = trapezoid_j(samples, t0, t1) / gain - big_y
    i = int(np.searchsorted(samples.t_ns, x_ns, side="right")) - 1
    chord = abs(samples.values[i + 1] - samples.values[i]) * H_S / 8 / gain
    return (big_y * abs(e1) + big_x * abs(e2)) / (big_y - abs(e2)) + chord * 1.01 + 2 * Q_J


def edge_bound_j(sig: Bursty, reads_ns: np.ndarray, x_ns: int, h_s: float, noise: float) -> float:
    """Worst-case error of the anchored energy up to ``x`` for a step-function truth.

    Inside the read interval [t0, t1] (true energy Y), the samples' integral up to x and over
    the interval are g (X + e1) and g (Y + e2), |e| <= eta: each step of the truth costs the
    trapezoid at most dP * h, so do the two cuts (t0, x), and bounded noise sigma * Pmax * L.
    The anchored split Y (X + e1) / (Y + e2) is then within 2 Y eta / (Y - eta) of X.
    """
    k = int(np.searchsorted(reads_ns, x_ns, side="right")) - 1
    if reads_ns[k] == x_ns:
        return Q_J
    t0, t1 = rel_s(reads_ns[k : k + 2])
    dp = float(sig.level_w.max() - sig.level_w.min())
    m = transitions(sig, t0 - h_s, t1 + h_s)
    y = float(sig.energy(np.array([t0]), np.array([t1]))[0])
    eta = (m + 2) * dp * h_s + noise * float(sig.level_w.max()) * (t1 - t0)
    shape = 2 * y * eta / (y - eta) if y > eta else y
    return min(shape, y) + 2 * Q_J


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
        curve = anchor(counter_trace(sig.energy, reads), samples)
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


# -- what was not anchored -------------------------------------------------------------------


def _setup(seed: int = 2, gain: float = 0.95):
    rng = np.random.default_rng(seed)
    sig = Bursty.random(rng, DURATION_S + 1)
    reads = read_times_ns(rng)
    return (
        rng,
        sig,
        reads,
        counter_trace(sig.energy, reads),
        samples_trace(sig.power, rng, gain=gain),
    )


def _drop(tr: Trace, a_ns: int, b_ns: int) -> Trace:
    keep = (tr.t_ns < a_ns) | (tr.t_ns > b_ns)
    return Trace(tr.t_ns[keep], tr.values[keep], tr.semantics, tr.nominal_period_ns)


def test_a_samples_gap_inside_an_interval_runs_at_the_counters_mean_power_there():
    _, _, reads, counter, samples = _setup()
    k = 20
    g0, g1 = reads[k] + 100_000_000, reads[k] + 250_000_000  # reads are >= 0.4 s apart
    curve = anchor(counter, _drop(samples, g0, g1))
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
    _, _, reads, counter, samples = _setup()
    curve = anchor(counter, _drop(samples, reads[10] - H_NS, reads[13] + H_NS))
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
    _, _, reads, counter, samples = _setup()
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
    _, sig, reads, counter, samples = _setup()
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
    _, sig, reads, counter, samples = _setup()
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
    _, _, reads, counter, samples = _setup()
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
        # rel * min(energy before the edge, after it) within its interval, per edge (RSS)
        expected = 0.0
        for x in (win.start_ns, win.end_ns):
            k = int(np.searchsorted(reads, x, side="right")) - 1
            before = truth_j(sig.energy, reads[k], x)
            after = truth_j(sig.energy, x, reads[k + 1])
            expected += (rel * min(before, after)) ** 2
        assert u.shape_j == pytest.approx(np.sqrt(expected), rel=0.05, abs=0.01)
        shape[dense] = u.shape_j
    assert shape[True] < shape[False] / 3, (
        f"dense edge reads did not shrink the shape term: {shape}"
    )


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


# -- inputs ----------------------------------------------------------------------------------


def test_wrong_semantics_are_refused_with_what_was_given():
    *_, counter, samples = _setup()
    with pytest.raises(TraceError, match="instant"):
        anchor(samples, samples)
    with pytest.raises(TraceError, match="got a counter"):
        anchor(counter, counter)


def test_a_single_read_anchors_nothing_and_says_so():
    _, _, reads, counter, samples = _setup()
    one = Trace(reads[:1], counter.values[:1], Semantics.COUNTER, counter.nominal_period_ns)
    curve = anchor(one, samples)
    assert len(curve.intervals) == 0 and curve.scale.scale is None
    assert window_energy(curve.trace, Window(int(reads[0]), int(reads[0]) + S)).covered_s == 0
    assert any("nothing can be anchored" in p for p in curve.problems)
