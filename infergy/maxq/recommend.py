"""A recommendation you can trust: the best feasible point and its gain, with an interval.

It says "no significant gain" when the gain's interval includes zero. Pure functions over
:class:`~infergy.maxq.points.MeasuredPoint`. The gain is relative to the default settings'
point (measured at the start and the end of a sweep: :func:`combine_baselines` merges the two,
their drift counted as uncertainty). For an objective where higher is better the gain is
``value / baseline - 1``, otherwise ``1 - value / baseline`` (less energy per query is a
positive gain); its interval is ``z`` sigmas of the ratio's uncertainty (relative parts added
in quadrature). The best of many noisy points is a little optimistic (the winner's curse): the
interval covers the measurement noise, not that selection.

:func:`knee_batch_size` is the ``--batch-size auto`` rule: the smallest batch within a few
percent of the best samples/s per watt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from infergy.maxq.errors import NoFeasiblePointError
from infergy.maxq.points import MeasuredPoint, Objective, objective

Z_95 = 1.96
"""The two-sided 95 % interval of a normal error, in sigmas."""


@dataclass(frozen=True)
class Constraints:
    """What a recommended point must meet (None: not constrained).

    Attributes:
        max_latency_ms: the latency bound at ``latency_percentile`` (Server, SingleStream).
        latency_percentile: the percentile the bound applies to.
        min_samples_per_second: the lowest acceptable throughput.
    """

    max_latency_ms: float | None = None
    latency_percentile: float = 99.0
    min_samples_per_second: float | None = None

    def violations(self, measured: MeasuredPoint) -> list[str]:
        """Why the point is not acceptable (empty: it is)."""
        out = []
        if self.max_latency_ms is not None:
            latency = measured.latency_at_ms(self.latency_percentile)
            pct = f"p{self.latency_percentile:g}"
            if latency is None:
                out.append(f"no {pct} latency measured")
            elif latency > self.max_latency_ms:
                out.append(f"{pct} latency {latency:.3g} ms > {self.max_latency_ms:g} ms")
        floor = self.min_samples_per_second
        if floor is not None and measured.samples_per_second < floor:
            out.append(f"{measured.samples_per_second:.4g} samples/s < {floor:g}")
        return out


@dataclass(frozen=True)
class Gain:
    """A relative gain over the baseline and its interval (0.29 = 29 % better).

    Attributes:
        relative: the point estimate.
        low: the interval's lower end.
        high: the interval's upper end.
    """

    relative: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        """True when the whole interval is a gain (it excludes zero from above)."""
        return self.low > 0


@dataclass(frozen=True)
class Recommendation:
    """The recommended settings and what they gain.

    Attributes:
        objective: the objective's name.
        unit: its unit.
        best: the recommended point (the baseline itself when nothing beats it).
        baseline: the default settings' point.
        value: the best's objective value.
        value_uncertainty: its uncertainty.
        baseline_value: the baseline's value.
        baseline_uncertainty: its uncertainty.
        gain: the gain over the baseline, with its interval.
        excluded: points left out by the constraints, with the reasons.
        simulated: True when any point was measured on a simulated GPU.
    """

    objective: str
    unit: str
    best: MeasuredPoint
    baseline: MeasuredPoint
    value: float
    value_uncertainty: float
    baseline_value: float
    baseline_uncertainty: float
    gain: Gain
    excluded: tuple[tuple[MeasuredPoint, str], ...]
    simulated: bool

    @property
    def summary(self) -> str:
        """One line for people, saying SIMULATED when it is."""
        g = self.gain
        interval = f"{100 * g.low:+.1f} to {100 * g.high:+.1f} %"
        text = f"{self.best.point.describe()}: {self.value:.4g} ± {self.value_uncertainty:.2g} "
        text += f"{self.unit}; "
        if g.significant:
            text += f"{100 * g.relative:+.1f} % over the default settings (95 %: {interval})"
        else:
            text += f"no significant gain over the default settings ({interval})"
        return f"{text} (SIMULATED)" if self.simulated else text


def _value(obj: Objective, measured: MeasuredPoint) -> tuple[float, float]:
    got = obj.value(measured)
    if got is None:
        msg = f"{measured.point.describe()}: no {obj.name} (the workload reports none)"
        raise NoFeasiblePointError(msg)
    return got


def gain_over(
    value: tuple[float, float],
    baseline: tuple[float, float],
    *,
    higher_is_better: bool,
    z: float = Z_95,
) -> Gain:
    """The relative gain of ``value`` over ``baseline`` ((value, sigma) pairs) and its interval."""
    (v, u), (v0, u0) = value, baseline
    ratio = v / v0
    sigma = abs(ratio) * math.hypot(u / v if v else 0.0, u0 / v0)
    relative = ratio - 1 if higher_is_better else 1 - ratio
    return Gain(relative, relative - z * sigma, relative + z * sigma)


def recommend(
    points: Sequence[MeasuredPoint],
    baseline: MeasuredPoint,
    *,
    objective_name: str = "samples-per-joule",
    constraints: Constraints | None = None,
    z: float = Z_95,
) -> Recommendation:
    """The best point meeting the constraints, and its gain over the default settings.

    Raises:
        NoFeasiblePointError: no point (the baseline included) meets the constraints.
        SweepSpecError: an unknown objective.
    """
    obj = objective(objective_name)
    limits = constraints or Constraints()
    candidates = [*points, baseline]
    feasible = [p for p in candidates if not limits.violations(p)]
    excluded = tuple((p, "; ".join(limits.violations(p))) for p in points if limits.violations(p))
    if not feasible:
        reasons = " | ".join(f"{p.point.describe()}: {why}" for p, why in excluded[:5])
        msg = f"no measured point meets the constraints ({reasons})"
        raise NoFeasiblePointError(msg, hint="relax --max-latency-ms or --min-samples-per-second")
    sign = 1.0 if obj.higher_is_better else -1.0
    best = max(feasible, key=lambda p: sign * _value(obj, p)[0])
    value, baseline_value = _value(obj, best), _value(obj, baseline)
    return Recommendation(
        objective=obj.name,
        unit=obj.unit,
        best=best,
        baseline=baseline,
        value=value[0],
        value_uncertainty=value[1],
        baseline_value=baseline_value[0],
        baseline_uncertainty=baseline_value[1],
        gain=gain_over(value, baseline_value, higher_is_better=obj.higher_is_better, z=z),
        excluded=excluded,
        simulated=any(p.simulated for p in candidates),
    )


def _merge(a: float, ua: float, b: float, ub: float) -> tuple[float, float]:
    """The mean of two readings; the uncertainty adds half their difference (the drift)."""
    return (a + b) / 2, math.hypot(math.hypot(ua, ub) / 2, (a - b) / 2)


def combine_baselines(start: MeasuredPoint, end: MeasuredPoint) -> MeasuredPoint:
    """The default settings measured at a sweep's start and end, as one baseline point."""
    sps, sps_u = _merge(
        start.samples_per_second,
        start.samples_per_second_uncertainty,
        end.samples_per_second,
        end.samples_per_second_uncertainty,
    )
    power, power_u = _merge(
        start.average_power_w,
        start.average_power_uncertainty_w,
        end.average_power_w,
        end.average_power_uncertainty_w,
    )
    latency = {
        q: max(start.latency_ms[q], end.latency_ms[q])
        for q in start.latency_ms.keys() & end.latency_ms.keys()
    }
    return replace(
        start,
        samples_per_second=sps,
        samples_per_second_uncertainty=sps_u,
        average_power_w=power,
        average_power_uncertainty_w=power_u,
        latency_ms=latency,
        simulated=start.simulated or end.simulated,
    )


def knee_batch_size(efficiency_by_batch: Mapping[int, float], *, within: float = 0.03) -> int:
    """The smallest batch whose samples/s per watt is within ``within`` of the best batch's.

    Raises:
        NoFeasiblePointError: no batch was measured.
    """
    if not efficiency_by_batch:
        msg = "no batch size was measured"
        raise NoFeasiblePointError(msg)
    best = max(efficiency_by_batch.values())
    return min(b for b, e in efficiency_by_batch.items() if e >= (1 - within) * best)
