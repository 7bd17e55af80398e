"""A measured sweep point and the objectives computed from it, each with its uncertainty.

:class:`MeasuredPoint` is what a session at one sweep point yields: throughput, average power,
latency percentiles (and, from generative workloads, tokens/s), each with a 1-sigma uncertainty.
Ratios combine relative uncertainties as a root-sum-square (throughput and power are measured
by independent means). :data:`OBJECTIVES` names what a sweep optimizes:
``samples-per-joule`` (= samples/s per watt), ``joules-per-query`` and ``tokens-per-joule``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from infergy.maxq.errors import SweepSpecError
from infergy.maxq.plan import SweepPoint
from infergy.maxq.search import Observation


@dataclass(frozen=True)
class MeasuredPoint:
    """The result of one sweep point (uncertainties are 1 sigma, in the value's unit).

    Attributes:
        point: the settings measured.
        samples_per_second: throughput.
        samples_per_second_uncertainty: its uncertainty.
        average_power_w: average power over the measured window (the source optimized for).
        average_power_uncertainty_w: its uncertainty.
        samples_per_query: 1 except MultiStream (8) and Offline (the query's samples).
        latency_ms: latency by percentile (``{50.0: ..., 99.0: ...}``).
        tokens_per_second: generated tokens/s, or None for non-generative workloads.
        tokens_per_second_uncertainty: its uncertainty.
        enforced_power_limit_w: the limit the GPU enforced during the point, if read.
        setting_binds: False when the setting did not take effect (a limit above the draw).
        simulated: True when measured on a simulated GPU.
    """

    point: SweepPoint
    samples_per_second: float
    samples_per_second_uncertainty: float
    average_power_w: float
    average_power_uncertainty_w: float
    samples_per_query: float = 1.0
    latency_ms: Mapping[float, float] = field(default_factory=dict)
    tokens_per_second: float | None = None
    tokens_per_second_uncertainty: float = 0.0
    enforced_power_limit_w: float | None = None
    setting_binds: bool = True
    simulated: bool = False

    @property
    def samples_per_joule(self) -> tuple[float, float]:
        """(samples per joule, its uncertainty)."""
        return _ratio(
            self.samples_per_second,
            self.samples_per_second_uncertainty,
            self.average_power_w,
            self.average_power_uncertainty_w,
        )

    @property
    def joules_per_query(self) -> tuple[float, float]:
        """(joules per query, its uncertainty) = power / queries per second."""
        queries_per_second = self.samples_per_second / self.samples_per_query
        return _ratio(
            self.average_power_w,
            self.average_power_uncertainty_w,
            queries_per_second,
            self.samples_per_second_uncertainty / self.samples_per_query,
        )

    @property
    def tokens_per_joule(self) -> tuple[float, float] | None:
        """(tokens per joule, its uncertainty), or None without a token rate."""
        if self.tokens_per_second is None:
            return None
        return _ratio(
            self.tokens_per_second,
            self.tokens_per_second_uncertainty,
            self.average_power_w,
            self.average_power_uncertainty_w,
        )

    def latency_at_ms(self, percentile: float) -> float | None:
        """The latency at a percentile, or None if it was not measured."""
        return self.latency_ms.get(percentile)


def _ratio(num: float, num_u: float, den: float, den_u: float) -> tuple[float, float]:
    value = num / den
    return value, abs(value) * math.hypot(num_u / num if num else 0.0, den_u / den)


@dataclass(frozen=True)
class Objective:
    """What a sweep optimizes.

    Attributes:
        name: the CLI name (``samples-per-joule``).
        unit: for people (``samples/J``).
        higher_is_better: False for energy per query.
        value: the (value, uncertainty) of a point, or None where it does not apply.
    """

    name: str
    unit: str
    higher_is_better: bool
    value: Callable[[MeasuredPoint], tuple[float, float] | None]

    def observation(self, measured: MeasuredPoint) -> Observation:
        """The point as a search sees it: the value signed so that higher is better."""
        got = self.value(measured)
        if got is None:
            msg = f"{measured.point.describe()}: no {self.name} (the workload reports none)"
            raise SweepSpecError(msg)
        value, uncertainty = got
        score = value if self.higher_is_better else -value
        return Observation(score, uncertainty, binding=measured.setting_binds)


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("samples-per-joule", "samples/J", True, lambda p: p.samples_per_joule),
        Objective("joules-per-query", "J/query", False, lambda p: p.joules_per_query),
        Objective("tokens-per-joule", "tokens/J", True, lambda p: p.tokens_per_joule),
    )
}
"""The objectives by name; ``tokens-per-joule`` needs a generative workload's token rate."""


def objective(name: str) -> Objective:
    """The objective called ``name``.

    Raises:
        SweepSpecError: an unknown name (the message lists the known ones).
    """
    try:
        return OBJECTIVES[name]
    except KeyError:
        msg = f"--objective: unknown {name!r}"
        raise SweepSpecError(msg, hint=f"choose from {', '.join(OBJECTIVES)}") from None
