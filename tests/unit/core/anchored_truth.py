"""Ground truth for the counter-anchored energy tests: known power, its counter, its samples.

The truth is a known power function P(t): piecewise constant (bursty 200-ms busy/idle, random
bursts, millisecond queries) or piecewise linear on the samples' grid (where 20-ms samples
describe the shape exactly). The counter is its exact integral read sparsely and quantized to
1 mJ as NVML gives it; the samples are P at 20-ms instants times a sensor gain (biased, noisy,
or part-time: a sensor that only sees every other 20-ms slot and holds its value). Nothing
here calls the module under test except ``anchored_j``, which integrates its curve through
the unchanged core (``window_energy``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infergy.core.anchored import AnchoredCurve
from infergy.core.energy import window_energy
from infergy.core.trace import NS_PER_S, Semantics, Trace, Window
from tests.synth import Bursty

S = NS_PER_S
T0 = 1_750_000_000 * S
H_NS = 20_000_000  # the driver's sample period
H_S = H_NS / S
Q_J = 1e-3  # NVML's counter resolution
BASE_J = 987_654.321  # the counter starts anywhere
DURATION_S = 60.0


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


def single_stream(rng: np.random.Generator) -> Bursty:
    """Millisecond queries (1.5-3 ms at 300-380 W, 0.5-4 ms idle at 95 W): finer than 20 ms."""
    n = 16_000
    lengths = np.stack((rng.uniform(0.0015, 0.003, n), rng.uniform(0.0005, 0.004, n)), 1).ravel()
    levels = np.stack((rng.uniform(300, 380, n), np.full(n, 95.0)), 1).ravel()
    edges = np.concatenate(([0.0], np.cumsum(lengths)))
    assert edges[-1] > DURATION_S + 1
    return Bursty(edges, levels, float(edges[-1]))


def window_errors(curve_or_trace, sig: Bursty, rng: np.random.Generator) -> np.ndarray:
    out = []
    trace = getattr(curve_or_trace, "trace", curve_or_trace)
    for _ in range(100):
        a, b = np.sort(rng.uniform(1.0, DURATION_S - 1.0, 2))
        a_ns, b_ns = int(to_ns(a)), int(to_ns(b))
        got = window_energy(trace, Window(a_ns, b_ns)).energy_j
        out.append(abs(got - truth_j(sig.energy, a_ns, b_ns)))
    return np.array(out)


def setup_case(seed: int = 2, gain: float = 0.95):
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


def drop(tr: Trace, a_ns: int, b_ns: int) -> Trace:
    keep = (tr.t_ns < a_ns) | (tr.t_ns > b_ns)
    return Trace(tr.t_ns[keep], tr.values[keep], tr.semantics, tr.nominal_period_ns)
