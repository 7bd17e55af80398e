"""A MaxQ sweep's files: the record, a points table, and its plots (matplotlib, PNG).

Drawn from the sweep record alone (docs/maxq.md), so ``infergy maxq show ID --plots``
redraws them identically from the store. Under ``<out>/<sweep_id>/``:

- ``sweep.json`` (the record) and ``points.csv`` (one row per measurement);
- ``efficiency_vs_<axis>.png`` for every swept axis (power limit, SM clock, memory clock,
  batch size): the objective with its 1-sigma error bars, one line per value of the other
  axes, the default settings as a dashed line and the recommendation circled;
- ``front.png``: throughput against power, every usable point, the Pareto front joined, the
  default settings and the pick marked; ``latency_energy.png``: the second front.

Unusable points (not ``ok``, INVALID) are drawn hollow in grey and never joined. Everything
simulated says SIMULATED in the title.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from infergy.errors import InputError

AXES = (
    ("power_limit_w", "power_limits_w", "power limit (W)"),
    ("sm_clock_mhz", "sm_clocks_mhz", "SM clock lock (MHz)"),
    ("mem_clock_mhz", "mem_clocks_mhz", "memory clock lock (MHz)"),
    ("batch_size", "batch_sizes", "batch size"),
)
_COLUMNS = (
    "index", "role", "run_id", "power_limit_w", "sm_clock_mhz", "mem_clock_mhz", "batch_size",
    "precision", "status", "usable", "samples_per_second", "samples_per_second_uncertainty",
    "average_power_w", "average_power_uncertainty_w", "objective", "objective_uncertainty",
    "setting_binds", "latency_p99_ms", "measured_s", "overhead_s", "problems",
)  # fmt: skip


def write_sweep_files(out_dir: Path, record: Mapping[str, Any]) -> list[Path]:
    """Write ``sweep.json`` and ``points.csv``.

    Raises:
        InputError: a file cannot be written.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "sweep.json"
        path.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        table = out_dir / "points.csv"
        with table.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if record.get("simulated"):
                f.write("# SIMULATED: measured on simulated hardware, not a measurement\n")
            writer.writerow(_COLUMNS)
            for p in record.get("points") or []:
                writer.writerow(_row(p))
    except OSError as err:
        msg = f"cannot write the sweep's files in {out_dir}: {err.strerror or err}"
        raise InputError(msg) from None
    return [path, table]


def _row(p: Mapping[str, Any]) -> list[Any]:
    point = p.get("point") or {}
    values = {**p, **point, "latency_p99_ms": (p.get("latency_ms") or {}).get("p99")}
    values["problems"] = "; ".join(p.get("problems") or [])
    return ["" if values.get(c) is None else values[c] for c in _COLUMNS]


def draw_sweep_plots(out_dir: Path, record: Mapping[str, Any]) -> list[Path]:
    """Write the efficiency plots of every swept axis and the two fronts.

    Raises:
        InputError: a file cannot be written.
    """
    import matplotlib as mpl  # noqa: PLC0415 (slow import, only where plots are drawn)

    mpl.use("Agg", force=True)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    axes = (record.get("plan") or {}).get("axes") or {}
    try:
        for field, plural, label in AXES:
            values = [v for v in axes.get(plural) or [] if v != "auto"]
            if len(values) > 1:
                fig = _efficiency_figure(plt, record, field, label)
                written.append(_save(fig, out_dir / f"efficiency_vs_{field}.png", plt))
        written.append(_save(_front_figure(plt, record), out_dir / "front.png", plt))
        fig = _latency_figure(plt, record)
        if fig is not None:
            written.append(_save(fig, out_dir / "latency_energy.png", plt))
    finally:
        plt.close("all")
    return written


def _save(fig: Any, path: Path, plt: Any) -> Path:
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except OSError as err:
        msg = f"cannot write {path}: {err.strerror or err}"
        raise InputError(msg) from None
    finally:
        plt.close(fig)
    return path


def _title(record: Mapping[str, Any], what: str) -> str:
    spec = record.get("spec") or {}
    sim = "  SIMULATED" if record.get("simulated") else ""
    return (
        f"{what}: sweep {record.get('sweep_id')}  {spec.get('backend') or ''}/"
        f"{spec.get('model')}  {spec.get('scenario')}  [{record.get('status')}]{sim}"
    )


def _points(record: Mapping[str, Any], *, baselines: bool = False) -> list[Mapping[str, Any]]:
    roles = ("point", "baseline-start", "baseline-end") if baselines else ("point",)
    return [p for p in record.get("points") or [] if p.get("role") in roles]


def _pick(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    rec = record.get("recommendation")
    return rec if isinstance(rec, Mapping) else None


def _efficiency_figure(plt: Any, record: Mapping[str, Any], field: str, label: str) -> Any:
    obj = record.get("objective") or {}
    fig, ax = plt.subplots(figsize=(8, 4.8))
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for p in _points(record, baselines=True):  # the default settings are a point of the curve
        point = p.get("point") or {}
        if point.get(field) is None:
            continue
        rest = ", ".join(
            f"{k.split('_')[0]} {v}" for k, v in point.items() if k != field and v is not None
        )
        groups.setdefault(rest or "all", []).append(p)
    for name, group in sorted(groups.items()):
        good = sorted((p for p in group if p.get("usable")), key=lambda p: p["point"][field])
        bad = [p for p in group if not p.get("usable") and p.get("objective") is not None]
        if good:
            ax.errorbar(
                [p["point"][field] for p in good],
                [p["objective"] for p in good],
                yerr=[p["objective_uncertainty"] or 0 for p in good],
                marker="o", capsize=3, label=name,
            )  # fmt: skip
        if bad:
            ax.scatter(
                [p["point"][field] for p in bad], [p["objective"] for p in bad],
                facecolors="none", edgecolors="grey", label=f"{name}: not usable",
            )  # fmt: skip
    baseline = record.get("baseline") or {}
    if baseline.get("objective") is not None:
        ax.axhline(baseline["objective"], ls="--", color="k", lw=1, label="default settings")
    pick = _pick(record)
    if pick is not None and (pick.get("point") or {}).get(field) is not None:
        ax.scatter(
            [pick["point"][field]], [pick["value"]], s=220, facecolors="none",
            edgecolors="red", linewidths=2, label="recommended", zorder=5,
        )  # fmt: skip
    if field == "batch_size":
        ax.set_xscale("log", base=2)
    ax.set_xlabel(label)
    ax.set_ylabel(f"{obj.get('name')} ({obj.get('unit')})")
    ax.set_title(_title(record, f"{obj.get('name')} vs {label}"), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def _xy(points: Sequence[Mapping[str, Any]], x: str, y: str) -> tuple[list[float], list[float]]:
    pairs = [(p[x], p[y]) for p in points if p.get(x) is not None and p.get(y) is not None]
    return [a for a, _ in pairs], [b for _, b in pairs]


def _front_figure(plt: Any, record: Mapping[str, Any]) -> Any:
    fig, ax = plt.subplots(figsize=(8, 4.8))
    points = _points(record)
    good = [p for p in points if p.get("usable")]
    bad = [p for p in points if not p.get("usable")]
    ax.scatter(*_xy(good, "average_power_w", "samples_per_second"), label="points", alpha=0.7)
    if bad:
        ax.scatter(
            *_xy(bad, "average_power_w", "samples_per_second"), facecolors="none",
            edgecolors="grey", label="not usable",
        )  # fmt: skip
    front = ((record.get("pareto") or {}).get("throughput_power")) or []
    if front:
        ax.plot(*_xy(front, "average_power_w", "samples_per_second"), "g-", lw=1.5,
                label="Pareto front")  # fmt: skip
    base = record.get("baseline") or {}
    if base.get("average_power_w") is not None:
        ax.scatter([base["average_power_w"]], [base["samples_per_second"]], marker="s", s=90,
                   color="k", label="default settings", zorder=5)  # fmt: skip
    pick = _pick(record)
    if pick is not None:
        ax.scatter([pick["average_power_w"]], [pick["samples_per_second"]], marker="*", s=260,
                   color="red", label="recommended", zorder=6)  # fmt: skip
    ax.set_xlabel(f"average power, {record.get('source')} (W)")
    ax.set_ylabel("samples/s")
    ax.set_title(_title(record, "throughput vs power"), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def _latency_figure(plt: Any, record: Mapping[str, Any]) -> Any | None:
    front = ((record.get("pareto") or {}).get("latency_energy")) or []
    rows = [
        (p["latency_ms"].get("p99"), p.get("joules_per_query"))
        for p in front
        if p.get("latency_ms") and p["latency_ms"].get("p99") is not None
    ]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label="Pareto front")
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("J/query")
    ax.set_title(_title(record, "latency vs energy per query"), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig
