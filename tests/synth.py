"""Synthetic power signals with known integrals, shared by the core tests and benchmarks.

Everything here is analytic or computed on a fine grid independent of infergy's integration,
so tests compare infergy against ground truth, never against itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infergy.core.trace import NS_PER_S, Semantics, Trace


@dataclass(frozen=True)
class Bursty:
    """Piecewise-constant power: ``idle_w`` plus bursts of ``burst_w`` at random times."""

    edges_s: np.ndarray  # change points, sorted, starting at 0
    level_w: np.ndarray  # power on [edges[i], edges[i+1])
    end_s: float

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        duration_s: float,
        idle_w: float = 80.0,
        burst_w: float = 220.0,
    ) -> Bursty:
        edges, levels, t, on = [0.0], [], 0.0, False
        while t < duration_s:
            levels.append(burst_w if on else idle_w)
            t += rng.uniform(0.15, 2.5) if on else rng.uniform(0.1, 1.8)
            edges.append(min(t, duration_s))
            on = not on
        return cls(np.array(edges), np.array(levels), duration_s)

    def power(self, t_s: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(self.edges_s, t_s, side="right") - 1, 0, self.level_w.size - 1)
        return self.level_w[i]

    def energy(self, a_s: np.ndarray, b_s: np.ndarray) -> np.ndarray:
        """Exact integral over [a, b] from the step function's cumulative sum."""
        cum = np.concatenate(([0.0], np.cumsum(np.diff(self.edges_s) * self.level_w)))

        def c(x: np.ndarray) -> np.ndarray:
            i = np.clip(
                np.searchsorted(self.edges_s, x, side="right") - 1, 0, self.level_w.size - 1
            )
            return cum[i] + (x - self.edges_s[i]) * self.level_w[i]

        return c(np.asarray(b_s, dtype=float)) - c(np.asarray(a_s, dtype=float))


def ns(t_s: np.ndarray | float) -> np.ndarray:
    return np.round(np.asarray(t_s, dtype=float) * NS_PER_S).astype(np.int64)


def analyzer_trace(
    sig: Bursty, t0_ns: int, offset_s: float, rest_w: float, noise: float, rng: np.random.Generator
) -> Trace:
    """A 1 Hz interval-mean analyzer measuring ``sig + rest_w`` with its clock ``offset_s`` ahead."""
    t_host = np.arange(1.0, sig.end_s + 1e-9, 1.0)
    mean = sig.energy(t_host - 1.0, t_host) / 1.0 + rest_w
    mean *= 1 + noise * rng.standard_normal(mean.size)
    return Trace(t0_ns + ns(t_host + offset_s), mean, Semantics.INTERVAL_MEAN, NS_PER_S)


def gpu_instant_trace(
    sig: Bursty, t0_ns: int, noise: float, rng: np.random.Generator, period_s: float = 0.02
) -> Trace:
    t = np.arange(0.0, sig.end_s + 1e-9, period_s)
    w = sig.power(t) * (1 + noise * rng.standard_normal(t.size))
    return Trace(t0_ns + ns(t), w, Semantics.INSTANT, ns(period_s).item())
