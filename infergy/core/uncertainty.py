"""Energy uncertainty of one source over a window, part by part (MEASUREMENT.md).

Parts, each in joules, combined as a root-sum-square (they are independent of each other):

- ``analyzer``: the instrument's per-sample relative uncertainty u_i, summed as correlated
  errors: ``sum u_i * |P_i| * dt_i`` over the window.
- ``edges``: for each window edge, the power near it times the source's update period (where in
  its last interval the energy fell is unknown).
- ``quantization``: a counter's resolution (1 mJ for NVML's energy counter).
- ``clock_offset``: the offset's uncertainty times the power change across the window: shifting
  the window by d changes its energy by about ``d * (P(end) - P(start))``.
- ``shape`` and ``extrapolation``: only for an energy counter anchored to dense power samples
  (:mod:`infergy.core.anchored_window`); None for every other source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from infergy.core.profile import PowerProfile
from infergy.core.trace import NS_PER_S, Semantics, Window

COUNTER_QUANTUM_J = 1e-3


@dataclass(frozen=True)
class UncertaintyParts:
    """The parts of a source's energy uncertainty, in joules (None: not applicable)."""

    analyzer_j: float | None
    edges_j: float
    quantization_j: float | None
    clock_offset_j: float | None
    shape_j: float | None = None
    extrapolation_j: float | None = None

    @property
    def total_j(self) -> float:
        """Root-sum-square of the parts that apply."""
        parts = (
            self.analyzer_j,
            self.edges_j,
            self.quantization_j,
            self.clock_offset_j,
            self.shape_j,
            self.extrapolation_j,
        )
        return math.sqrt(sum(p * p for p in parts if p is not None))

    def as_dict(self) -> dict[str, float | None]:
        """The parts keyed as in the result JSON."""
        return {
            "analyzer_joules": self.analyzer_j,
            "edges_joules": self.edges_j,
            "quantization_joules": self.quantization_j,
            "clock_offset_joules": self.clock_offset_j,
            "shape_joules": self.shape_j,
            "extrapolation_joules": self.extrapolation_j,
        }


def energy_uncertainty(
    profile: PowerProfile,
    window: Window,
    *,
    update_period_ns: int | None = None,
    offset_uncertainty_ns: int | None = None,
) -> UncertaintyParts:
    """Uncertainty parts of the window energy of one source.

    Args:
        profile: the source's profile on the host clock.
        window: the measured run.
        update_period_ns: the source's real update period (defaults to the nominal period; for
            a counter pass the measured update period).
        offset_uncertainty_ns: uncertainty of the clock offset applied, if any.
    """
    period_ns = update_period_ns or profile.nominal_period_ns
    edges = np.array([window.start_ns, window.end_ns], dtype=np.int64)
    near = profile.mean_power_w(edges - period_ns, edges + period_ns)
    near = np.where(np.isfinite(near), np.abs(near), 0.0)
    edge_j = float(np.sqrt(np.sum((near * period_ns / NS_PER_S) ** 2)))
    analyzer_j = None
    cum_u = profile.uncertainty_j(profile.rel_s(edges))
    if cum_u is not None:
        analyzer_j = float(cum_u[1] - cum_u[0])
    quant_j = COUNTER_QUANTUM_J if profile.semantics is Semantics.COUNTER else None
    clock_j = None
    if offset_uncertainty_ns is not None:
        clock_j = abs(offset_uncertainty_ns / NS_PER_S * float(near[1] - near[0]))
    return UncertaintyParts(analyzer_j, edge_j, quant_j, clock_j)
