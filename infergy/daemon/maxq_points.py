"""A sweep point's figures, read from the session result it was measured as.

Every point of a sweep is a real measured session (:class:`~infergy.daemon.session.Session`)
whose result is stored as a run. :func:`point_entry` reads back what MaxQ needs, with the
uncertainties the analysis computed:

- throughput: ``performance.samples_per_second``; its uncertainty is one batch at the
  window's edges (the window is timed exactly on the session clock, the count is whole
  batches);
- power: the optimised source's ``average_watts`` and ``uncertainty_joules`` over the window
  (analyzer accuracy, window edges, counter quantization, clock offset);
- latency percentiles, the enforced power limit, and whether the setting took effect
  (``setting_binds``: a power limit binds when the GPUs draw at least 97 % of it; a clock lock
  binds unless the power limit holds the clock below it, i.e. the GPUs draw at the limit).

A point is *usable* only when its result's status is ``ok`` and LoadGen called it VALID; any
other point is kept in the record with the reason, and never recommended (the search sees it
as infeasible). A point whose primary sources (``gpu0``, ``gpus``, ``ac``, ``cpu``: not the
comparison signals ``gpu0.avg``...) lost coverage (an analyzer or GPU lost) stops the sweep.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infergy.core.trace import Scenario
from infergy.maxq.plan import SweepPoint
from infergy.maxq.points import MeasuredPoint
from infergy.maxq.recommend import Constraints

BIND_FRACTION = 0.97
"""A power limit binds when the GPUs draw at least this share of it (a capped GPU hovers below)."""
_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0}


@dataclass
class PointEntry:
    """One measurement of a sweep as the record keeps it (also unusable ones).

    Attributes:
        index: its place in the sweep (0: the start baseline).
        role: ``baseline-start``, ``point`` or ``baseline-end``.
        run_id: the stored session.
        point: the settings asked (``None`` fields: defaults).
        status: the session result's status.
        problems: why it is not usable (empty when usable).
        measured: the figures, or None when the result has none.
        lost_sources: sources whose coverage fell below the degraded threshold.
        wall_s: seconds the point took from the change of settings to its analysed result.
        measured_s: its measured window's duration.
    """

    index: int
    role: str
    run_id: str
    point: dict[str, Any]
    status: str
    problems: list[str] = field(default_factory=list)
    measured: MeasuredPoint | None = None
    lost_sources: list[str] = field(default_factory=list)
    wall_s: float | None = None
    measured_s: float | None = None

    @property
    def usable(self) -> bool:
        """Status ``ok``, LoadGen VALID and figures present."""
        return self.measured is not None and not self.problems


def choose_source(result: Mapping[str, Any], wanted: str) -> str | None:
    """The power source optimised: ``wanted``, or for ``auto`` the GPUs, else an analyzer."""
    power = result.get("power") or {}
    if wanted != "auto":
        return wanted if wanted in power else None
    for name in ("gpus", "gpu0"):
        if name in power:
            return name
    return next((n for n, p in power.items() if (p or {}).get("kind") == "analyzer"), None)


def _gpu_draw_w(power: Mapping[str, Any]) -> float | None:
    """The GPUs' own average power (their sum), to tell whether a limit binds."""
    for name in ("gpus", "gpu0"):
        value = (power.get(name) or {}).get("average_watts")
        if isinstance(value, int | float):
            return float(value)
    return None


def setting_binds(
    power: Mapping[str, Any], *, limit_w: float | None, ordered_axis: str | None
) -> bool:
    """Whether the point's ordered setting took effect (see the module docstring)."""
    draw = _gpu_draw_w(power)
    if draw is None or limit_w is None or ordered_axis is None:
        return True
    at_limit = draw >= BIND_FRACTION * limit_w
    return at_limit if ordered_axis == "power_limit_w" else not at_limit


def point_entry(
    result: Mapping[str, Any],
    *,
    index: int,
    role: str,
    point: dict[str, Any],
    source: str,
    batch_size: int,
    degraded_coverage: float,
    limit_w: float | None,
    ordered_axis: str | None,
    enforced_limit_w: float | None,
    simulated: bool,
) -> PointEntry:
    """Read a point's figures from its session result; the reasons when it is not usable."""
    status = str(result.get("status"))
    entry = PointEntry(index, role, str(result.get("run_id")), point, status)
    problems: list[str] = []
    if status != "ok":
        problems.append(f"the session result is {status}")
    validity = (result.get("loadgen") or {}).get("validity")
    if validity not in (None, "VALID"):
        problems.append(f"LoadGen reports the run {validity}")
    power: Mapping[str, Any] = result.get("power") or {}
    entry.lost_sources = sorted(  # primary signals only (gpu0, gpus, ac, cpu; not gpu0.avg)
        name
        for name, p in power.items()
        if "." not in name
        and isinstance((p or {}).get("coverage"), int | float)
        and p["coverage"] < degraded_coverage
    )
    window = result.get("window") or {}
    perf = result.get("performance") or {}
    duration_s = window.get("duration_s")
    entry.measured_s = float(duration_s) if isinstance(duration_s, int | float) else None
    chosen = power.get(source) or {}
    sps = perf.get("samples_per_second")
    watts = chosen.get("average_watts")
    energy_u = chosen.get("uncertainty_joules")
    if not all(isinstance(v, int | float) and v > 0 for v in (sps, watts, duration_s)):
        problems.append(f"no throughput or {source} power was measured")
        entry.problems = problems
        return entry
    assert isinstance(sps, int | float) and isinstance(watts, int | float)
    assert isinstance(duration_s, int | float)
    queries, samples = perf.get("queries") or 0, perf.get("samples") or 0
    offline = result.get("scenario") == Scenario.OFFLINE.value
    per_query = 1.0 if offline or not queries else float(samples) / float(queries)
    entry.measured = MeasuredPoint(
        point=_sweep_point(point),
        samples_per_second=float(sps),
        samples_per_second_uncertainty=max(batch_size, per_query) / float(duration_s),
        average_power_w=float(watts),
        average_power_uncertainty_w=float(energy_u or 0.0) / float(duration_s),
        samples_per_query=per_query,
        latency_ms={
            q: float(v)
            for k, q in _PERCENTILES.items()
            if isinstance(v := (perf.get("latency_ms") or {}).get(k), int | float)
        },
        **_token_rate(result, float(sps), max(batch_size, per_query) / float(duration_s)),
        enforced_power_limit_w=enforced_limit_w,
        setting_binds=setting_binds(power, limit_w=limit_w, ordered_axis=ordered_axis),
        simulated=simulated or bool(chosen.get("simulated")),
    )
    entry.problems = problems
    return entry


def _token_rate(result: Mapping[str, Any], sps: float, sps_u: float) -> dict[str, float]:
    """A generative point's output tokens/s and uncertainty; nothing for other workloads.

    The uncertainty is the samples' rate's, scaled by the tokens a sample.
    """
    tps = (result.get("generative") or {}).get("output_tokens_per_second")
    if not isinstance(tps, int | float) or tps <= 0:
        return {}
    return {"tokens_per_second": float(tps), "tokens_per_second_uncertainty": tps * sps_u / sps}


def _sweep_point(point: Mapping[str, Any]) -> SweepPoint:
    return SweepPoint(**{k: point.get(k) for k in SweepPoint.__dataclass_fields__})


def constraint_problems(entry: PointEntry, constraints: Constraints) -> list[str]:
    """Why a usable point does not meet the sweep's constraints (empty: it does)."""
    return [] if entry.measured is None else constraints.violations(entry.measured)


def entry_json(entry: PointEntry, objective_value: tuple[float, float] | None) -> dict[str, Any]:
    """A point as the sweep record stores it (SWEEPS.md's ``points[]``)."""
    m = entry.measured
    return {
        "index": entry.index,
        "role": entry.role,
        "run_id": entry.run_id,
        "point": entry.point,
        "status": entry.status,
        "usable": entry.usable,
        "problems": entry.problems,
        "samples_per_second": None if m is None else m.samples_per_second,
        "samples_per_second_uncertainty": None if m is None else m.samples_per_second_uncertainty,
        "average_power_w": None if m is None else m.average_power_w,
        "average_power_uncertainty_w": None if m is None else m.average_power_uncertainty_w,
        "samples_per_query": None if m is None else m.samples_per_query,
        "tokens_per_second": None if m is None else m.tokens_per_second,
        "tokens_per_second_uncertainty": None if m is None else m.tokens_per_second_uncertainty,
        "latency_ms": None if m is None else {f"p{q:g}": v for q, v in m.latency_ms.items()},
        "objective": None if objective_value is None else objective_value[0],
        "objective_uncertainty": None if objective_value is None else objective_value[1],
        "enforced_power_limit_w": None if m is None else m.enforced_power_limit_w,
        "setting_binds": None if m is None else m.setting_binds,
        "simulated": None if m is None else m.simulated,
        "lost_sources": entry.lost_sources,
        "measured_s": entry.measured_s,
        "wall_s": entry.wall_s,
        "overhead_s": (
            None
            if entry.wall_s is None or entry.measured_s is None
            else entry.wall_s - entry.measured_s
        ),
    }


def entry_from_json(body: Mapping[str, Any]) -> PointEntry:
    """Inverse of :func:`entry_json` (a resumed sweep replays its stored points)."""
    entry = PointEntry(
        index=int(body["index"]),
        role=str(body["role"]),
        run_id=str(body["run_id"]),
        point=dict(body["point"]),
        status=str(body["status"]),
        problems=list(body.get("problems") or []),
        lost_sources=list(body.get("lost_sources") or []),
        wall_s=body.get("wall_s"),
        measured_s=body.get("measured_s"),
    )
    if body.get("samples_per_second") is not None:
        entry.measured = MeasuredPoint(
            point=_sweep_point(entry.point),
            samples_per_second=float(body["samples_per_second"]),
            samples_per_second_uncertainty=float(body["samples_per_second_uncertainty"]),
            average_power_w=float(body["average_power_w"]),
            average_power_uncertainty_w=float(body["average_power_uncertainty_w"]),
            samples_per_query=float(body.get("samples_per_query") or 1.0),
            tokens_per_second=body.get("tokens_per_second"),
            tokens_per_second_uncertainty=float(body.get("tokens_per_second_uncertainty") or 0.0),
            latency_ms={
                float(k.removeprefix("p")): float(v)
                for k, v in (body.get("latency_ms") or {}).items()
            },
            enforced_power_limit_w=body.get("enforced_power_limit_w"),
            setting_binds=bool(body.get("setting_binds", True)),
            simulated=bool(body.get("simulated")),
        )
    return entry


def usable(entries: Sequence[PointEntry]) -> list[PointEntry]:
    """The entries that may be compared and recommended."""
    return [e for e in entries if e.usable]
