"""Counter-anchored energy (issue 19): what building the curve costs, and how right it is.

Pure CPU, synthetic ground truth. The truth is piecewise-constant power with an exact integral:

- ``offline``: 80-120 ms batches at 640-700 W, 4-8 ms host gaps at 380 W;
- ``single-stream``: 1.5-3 ms queries at 300-380 W, 0.5-4 ms idle at 95 W (finer than 20 ms);
- ``bursty``: 200 ms busy at 700 W, 200 ms idle at 90 W.

The counter is the exact integral in whole mJ, read every 1 s on the counter's 100-ms update
grid (as the meter stamps reads at updates), plus, for "dense edges", every update within
0.5 s of each window edge. The samples are P at 20-ms instants through a sensor: ``h200``
(gain 1, 0.5 % noise), ``biased`` (gain 0.97, 1 % noise) or ``part-time`` (gain 1, sees every
other 20-ms slot and holds it). Windows: 200 per case, 1-30 s long, edges anywhere. Compared:
the anchored curve (sparse reads, dense edge reads, and without shrinking noisy shapes), the
plain counter (linear between reads) and the raw samples (trapezoid).

Usage:
    python bench/anchored_energy.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import zlib
from collections.abc import Callable

import numpy as np

from infergy.core.anchored import anchor
from infergy.core.anchored_window import anchored_window
from infergy.core.energy import window_energy
from infergy.core.profile import PowerProfile
from infergy.core.trace import NS_PER_S, Semantics, Trace, Window

T0 = 1_750_000_000 * NS_PER_S
H_NS = 20_000_000
UPDATE_NS = 100_000_000
WINDOWS = 200
METHODS = ("anchored", "anchored_dense", "no_shrink", "counter", "counter_dense", "samples")


class Steps:
    """Piecewise-constant power from segment lengths and levels, with its exact integral."""

    def __init__(self, lengths_s: np.ndarray, levels_w: np.ndarray) -> None:
        self.edges_s = np.concatenate(([0.0], np.cumsum(lengths_s)))
        self.levels_w = levels_w
        self.cum_j = np.concatenate(([0.0], np.cumsum(lengths_s * levels_w)))

    def power(self, t_s: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(self.edges_s, t_s, side="right") - 1, 0, self.levels_w.size - 1)
        return self.levels_w[i]

    def cumulative(self, t_s: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(self.edges_s, t_s, side="right") - 1, 0, self.levels_w.size - 1)
        return self.cum_j[i] + (t_s - self.edges_s[i]) * self.levels_w[i]


def load(kind: str, duration_s: float, rng: np.random.Generator) -> Steps:
    if kind == "offline":  # ~106 ms per (batch, gap) pair
        n = int(duration_s * 12) + 10
        busy = np.stack((rng.uniform(0.08, 0.12, n), rng.uniform(0.004, 0.008, n)), 1)
        level = np.stack((rng.uniform(640, 700, n), np.full(n, 380.0)), 1)
    elif kind == "single-stream":  # ~4.5 ms per (query, idle) pair
        n = int(duration_s * 260) + 10
        busy = np.stack((rng.uniform(0.0015, 0.003, n), rng.uniform(0.0005, 0.004, n)), 1)
        level = np.stack((rng.uniform(300, 380, n), np.full(n, 95.0)), 1)
    else:
        n = int(duration_s * 3) + 10
        busy = np.full((n, 2), 0.2)
        level = np.tile([700.0, 90.0], (n, 1))
    steps = Steps(busy.ravel(), level.ravel())
    assert steps.edges_s[-1] > duration_s + 2
    return steps


def rel_s(t_ns: np.ndarray) -> np.ndarray:
    return (t_ns - T0) / NS_PER_S


def counter(sig: Steps, reads_ns: np.ndarray) -> Trace:
    mj = np.floor((123_456.0 + sig.cumulative(rel_s(reads_ns))) * 1000.0)
    return Trace(reads_ns, mj / 1000.0, Semantics.COUNTER, UPDATE_NS)


def sparse_reads(duration_s: float, rng: np.random.Generator) -> np.ndarray:
    phase = int(rng.integers(0, 10)) * UPDATE_NS + 37_000_000  # reads land on update instants
    return T0 + phase + np.arange(0, int(duration_s * NS_PER_S) - phase, NS_PER_S, dtype=np.int64)


def with_dense_edges(reads: np.ndarray, edges_ns: tuple[int, int]) -> np.ndarray:
    grid = [
        reads[0] + (((e - reads[0]) // UPDATE_NS) + np.arange(-5, 6)) * UPDATE_NS for e in edges_ns
    ]
    out = np.unique(np.concatenate([reads, *grid]))
    return out[(out >= reads[0]) & (out <= reads[-1])]


def samples(sig: Steps, duration_s: float, sensor: str, rng: np.random.Generator) -> Trace:
    t = T0 + 11_000_000 + np.arange(0, int(duration_s * NS_PER_S) - H_NS, H_NS, dtype=np.int64)
    gain, noise = {"h200": (1.0, 0.005), "biased": (0.97, 0.01), "part-time": (1.0, 0.005)}[sensor]
    w = gain * sig.power(rel_s(t)) * (1 + noise * rng.standard_normal(t.size))
    if sensor == "part-time":
        w[1::2] = w[0::2][: w[1::2].size]
    return Trace(t, w, Semantics.INSTANT, H_NS)


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` in ms."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return statistics.median(out)


def cost(duration_s: float) -> dict[str, float]:
    rng = np.random.default_rng(1)
    sig = load("bursty", duration_s + 3, rng)
    c = counter(sig, sparse_reads(duration_s, rng))
    s = samples(sig, duration_s, "biased", rng)
    repeat = 30 if duration_s < 100 else 10
    curve = anchor(c, s)
    win = Window(T0 + NS_PER_S + 123_456_789, T0 + int((duration_s - 1.3) * NS_PER_S))
    return {
        "duration_s": duration_s,
        "samples": float(len(s)),
        "counter_reads": float(len(c)),
        "curve_knots": float(len(curve.trace)),
        "anchor_ms": timed(lambda: anchor(c, s), repeat),
        "profile_of_curve_ms": timed(lambda: PowerProfile.of(curve.trace), repeat),
        "window_energy_ms": timed(
            lambda: window_energy(curve.trace, win, profile=curve.profile), repeat
        ),
        "anchored_window_ms": timed(lambda: anchored_window(curve, win), repeat),
        "samples_profile_ms": timed(lambda: PowerProfile.of(s), repeat),
    }


def accuracy(kind: str, sensor: str, duration_s: float = 120.0) -> dict[str, object]:
    rng = np.random.default_rng(zlib.crc32(f"{kind}/{sensor}".encode()))  # fixed per case
    sig = load(kind, duration_s + 3, rng)
    reads = sparse_reads(duration_s, rng)
    c, s = counter(sig, reads), samples(sig, duration_s, sensor, rng)
    curve, unshrunk = anchor(c, s), anchor(c, s, shrink=False)
    errs: dict[str, list[float]] = {m: [] for m in METHODS}
    covered = 0
    for _ in range(WINDOWS):
        length = rng.uniform(1.0, 30.0)
        a = rng.uniform(1.5, duration_s - 1.5 - length)
        win = Window(T0 + int(a * NS_PER_S), T0 + int((a + length) * NS_PER_S))
        truth = float(np.diff(sig.cumulative(rel_s(np.array([win.start_ns, win.end_ns]))))[0])
        dense = with_dense_edges(reads, (win.start_ns, win.end_ns))
        c_dense = counter(sig, dense)
        got = {
            "anchored": window_energy(curve.trace, win, profile=curve.profile).energy_j,
            "anchored_dense": window_energy(anchor(c_dense, s).trace, win).energy_j,
            "no_shrink": window_energy(unshrunk.trace, win, profile=unshrunk.profile).energy_j,
            "counter": window_energy(c, win).energy_j,
            "counter_dense": window_energy(c_dense, win).energy_j,
            "samples": window_energy(s, win).energy_j,
        }
        for m, e in got.items():
            errs[m].append((e - truth) / truth)
        err_j = abs(got["anchored"] - truth)
        covered += err_j <= anchored_window(curve, win).uncertainty.total_j
    summary = {
        m: {"median_abs_pct": float(np.median(np.abs(v)) * 100),
            "p99_abs_pct": float(np.percentile(np.abs(v), 99) * 100)}
        for m, v in errs.items()
    }  # fmt: skip
    sc = curve.scale
    return {
        "load": kind,
        "sensor": sensor,
        "errors": summary,
        "within_reported_uncertainty": covered / WINDOWS,
        "scale": sc.scale,
        "scale_uncertainty": sc.uncertainty,
        "drifted": sc.drifted(),
        "noise_w": curve.noise_w,
        "median_shape_weight": float(np.median(curve.intervals.shape_weight)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    costs = [cost(60.0), cost(600.0)]
    acc = [
        accuracy(k, s)
        for k in ("offline", "single-stream", "bursty")
        for s in ("h200", "biased", "part-time")
    ]
    machine = f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}"
    if args.json:
        print(json.dumps({"cost": costs, "accuracy": acc, "machine": machine}, indent=2))
        return
    print(f"cost (median ms; {machine}, numpy {np.__version__}):")
    for r in costs:
        print(
            f"  {r['duration_s']:>4.0f} s: {r['samples']:.0f} samples, {r['counter_reads']:.0f} "
            f"reads -> {r['curve_knots']:.0f} knots | anchor {r['anchor_ms']:.2f} | profile of "
            f"curve {r['profile_of_curve_ms']:.2f} | window_energy {r['window_energy_ms']:.3f} | "
            f"anchored_window {r['anchored_window_ms']:.2f} | (samples' own profile "
            f"{r['samples_profile_ms']:.2f})"
        )
    print(f"\nerror vs truth over {WINDOWS} windows of 1-30 s (median / p99 of |error|, %):")
    methods = METHODS
    print(f"  {'load':<14}{'sensor':<10}" + "".join(f"{m:>17}" for m in methods)
          + "  in-u   scale +- u          drift  noise W  weight")  # fmt: skip
    for r in acc:
        e = r["errors"]
        assert isinstance(e, dict)
        cells = "".join(
            f"{e[m]['median_abs_pct']:>8.3f}/{e[m]['p99_abs_pct']:<8.3f}" for m in methods
        )
        scale = f"{r['scale']:.4f} +- {r['scale_uncertainty']:.4f}"
        print(f"  {r['load']:<14}{r['sensor']:<10}{cells} {r['within_reported_uncertainty']:>5.0%}"
              f"  {scale:<19} {r['drifted']!s:<6} {r['noise_w']:>6.1f}  "
              f"{r['median_shape_weight']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
