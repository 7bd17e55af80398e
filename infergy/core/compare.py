"""Two results side by side: their figures, the deltas with uncertainties, settings that differ.

``infergy runs compare A B`` prints this. A delta is ``B - A``; its uncertainty combines the
two results' own uncertainties as independent (root-sum-square), where both carry one:

- ``energy_joules``: ``uncertainty_joules`` as the result states it;
- ``average_watts``: that energy uncertainty over the window's duration (the window's length
  is known to the nanosecond, so it adds nothing);
- ``samples_per_second_per_watt`` and ``joules_per_query``: the energy's relative uncertainty
  (samples and queries are counted, not measured: samples/s/W = samples / energy).

Treating the runs as independent is conservative for one instrument's systematic error, which
shifts both runs alike and partly cancels in a delta. Absent figures stay ``None``: a delta
exists only where both runs have the figure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

_PERFORMANCE = ("samples_per_second", "queries", "samples")
_LATENCY = ("p50", "p90", "p99")
_POWER = ("energy_joules", "average_watts", "mlperf_average_watts", "idle_watts", "coverage")
_EFFICIENCY = (
    "samples_per_second_per_watt",
    "joules_per_query",
    "millijoules_per_query_mlperf",
    "dynamic_joules_per_query",
)
_ENERGY_RELATIVE = frozenset({"samples_per_second_per_watt", "joules_per_query"})
_IDENTITY = ("scenario", "backend", "model", "precision", "batch_size", "devices", "host")


@dataclass(frozen=True)
class FigureDelta:
    """One figure of both runs; ``None`` where a run lacks it (or for the delta, either)."""

    name: str
    """Where the figure sits in the result, e.g. ``power.ac.average_watts``."""
    a: float | None
    b: float | None
    uncertainty_a: float | None
    uncertainty_b: float | None

    @property
    def delta(self) -> float | None:
        """``b - a``."""
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def relative(self) -> float | None:
        """``(b - a) / |a|`` (``None`` when ``a`` is 0 or absent)."""
        d = self.delta
        return None if d is None or not self.a else d / abs(self.a)

    @property
    def delta_uncertainty(self) -> float | None:
        """Root-sum-square of both runs' uncertainties, where both have one."""
        if self.delta is None or self.uncertainty_a is None or self.uncertainty_b is None:
            return None
        return math.hypot(self.uncertainty_a, self.uncertainty_b)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the derived delta, relative delta and its uncertainty."""
        return asdict(self) | {
            "delta": self.delta,
            "relative": self.relative,
            "delta_uncertainty": self.delta_uncertainty,
        }


@dataclass(frozen=True)
class SettingDiff:
    """A setting (job field, config key, identity) whose value differs between the runs."""

    name: str
    a: Any
    b: Any


@dataclass(frozen=True)
class Comparison:
    """What ``compare_results`` found."""

    run_a: str
    run_b: str
    figures: list[FigureDelta]
    settings: list[SettingDiff]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``infergy runs compare --json``)."""
        return {
            "a": self.run_a,
            "b": self.run_b,
            "figures": [f.as_dict() for f in self.figures],
            "settings": [asdict(s) for s in self.settings],
        }


def compare_results(a: Mapping[str, Any], b: Mapping[str, Any]) -> Comparison:
    """Compare two result objects (schema 1); see the module docstring."""
    figures = [
        FigureDelta("window.duration_s", *_pair(a, b, "window", "duration_s"), None, None),
        *(FigureDelta(f"performance.{k}", *_pair(a, b, "performance", k), None, None)
          for k in _PERFORMANCE),
        *(FigureDelta(f"performance.latency_ms.{k}",
                      *_pair(a, b, "performance", "latency_ms", k), None, None)
          for k in _LATENCY),
    ]  # fmt: skip
    for source in _sources(a, b):
        ua, ub = _energy_u(a, source), _energy_u(b, source)
        for key in _POWER:
            va, vb = _pair(a, b, "power", source, key)
            figures.append(
                FigureDelta(f"power.{source}.{key}", va, vb, *_scaled(key, (va, ua), (vb, ub)))
            )
        for key in _EFFICIENCY:
            va, vb = _pair(a, b, "efficiency", source, key)
            figures.append(
                FigureDelta(f"efficiency.{source}.{key}", va, vb, *_scaled(key, (va, ua), (vb, ub)))
            )
    figures = [f for f in figures if f.a is not None or f.b is not None]
    return Comparison(str(a.get("run_id")), str(b.get("run_id")), figures, _settings(a, b))


HEADLINE_ORDER = (r"ac", r"ac\d+", r"gpus", r"gpu\d+")
"""The source a result is summed up by: wall power first, then the GPUs' sum, one GPU."""


def headline_rank(source: str) -> tuple[int, str]:
    """Sort key of :data:`HEADLINE_ORDER` (the rest after, by name)."""
    rank = next((i for i, p in enumerate(HEADLINE_ORDER) if re.fullmatch(p, source)), None)
    return (len(HEADLINE_ORDER) if rank is None else rank), source


def headline_source(result: Mapping[str, Any]) -> str | None:
    """The result's headline source: the first of :data:`HEADLINE_ORDER` it has figures of."""
    efficiency = result.get("efficiency")
    names = [str(k) for k in efficiency] if isinstance(efficiency, Mapping) else []
    return min(names, key=headline_rank, default=None)


def source_figures(result: Mapping[str, Any], source: str) -> dict[str, float | None]:
    """One source's headline figures in a result, each with its uncertainty (``None``: absent).

    ``samples_per_second``; ``average_watts``, ``samples_per_second_per_watt`` and
    ``joules_per_query`` with ``*_uncertainty`` as the module docstring derives them from the
    source's ``uncertainty_joules``.
    """
    energy = _energy_u(result, source)
    out: dict[str, float | None] = {
        "samples_per_second": _number(result, "performance", "samples_per_second"),
    }
    for section, key in (
        ("power", "average_watts"),
        ("efficiency", "samples_per_second_per_watt"),
        ("efficiency", "joules_per_query"),
    ):
        value = _number(result, section, source, key)
        out[key] = value
        out[f"{key}_uncertainty"] = _scaled(key, (value, energy), (None, energy))[0]
    return out


def _number(data: Any, *path: str) -> float | None:
    for key in path:
        data = data.get(key) if isinstance(data, Mapping) else None
    ok = isinstance(data, int | float) and not isinstance(data, bool) and math.isfinite(data)
    return float(data) if ok else None


def _pair(
    a: Mapping[str, Any], b: Mapping[str, Any], *path: str
) -> tuple[float | None, float | None]:
    return _number(a, *path), _number(b, *path)


def _sources(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    names: dict[str, None] = {}
    for r in (a, b):
        for section in ("power", "efficiency"):
            value = r.get(section)
            names |= dict.fromkeys(value if isinstance(value, Mapping) else ())
    return list(names)


def _energy_u(r: Mapping[str, Any], source: str) -> tuple[float | None, float | None, float | None]:
    """(energy J, its uncertainty J, window s) of a source in one result."""
    return (
        _number(r, "power", source, "energy_joules"),
        _number(r, "power", source, "uncertainty_joules"),
        _number(r, "window", "duration_s"),
    )


def _scaled(
    key: str,
    *runs: tuple[float | None, tuple[float | None, float | None, float | None]],
) -> tuple[float | None, float | None]:
    """Each run's uncertainty of the figure ``key`` (see the module docstring)."""
    out: list[float | None] = []
    for value, (energy_j, u_j, duration_s) in runs:
        u: float | None = None
        if value is not None and u_j is not None:
            if key == "energy_joules":
                u = u_j
            elif key == "average_watts" and duration_s:
                u = u_j / duration_s
            elif key in _ENERGY_RELATIVE and energy_j:
                u = abs(value) * u_j / abs(energy_j)
        out.append(u)
    return out[0], out[1]


def _settings(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[SettingDiff]:
    flat_a, flat_b = dict(_flat_settings(a)), dict(_flat_settings(b))
    return [
        SettingDiff(name, flat_a.get(name), flat_b.get(name))
        for name in {**flat_a, **flat_b}
        if flat_a.get(name) != flat_b.get(name)
    ]


def _flat_settings(r: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for key in _IDENTITY:
        if key in r:
            yield key, r[key]
    provenance = r.get("provenance")
    if isinstance(provenance, Mapping):
        for section in ("job", "config"):
            yield from _flatten(f"{section}.", provenance.get(section))


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _flatten(f"{prefix}{key}.", item)
    else:
        yield prefix.removesuffix("."), value
