"""Human output of ``infergy maxq``: the plan, progress per point, the points table, the fronts.

The sweep record (docs/maxq.md) is the contract; this renders it for people. Everything
simulated says SIMULATED.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from infergy.cli.progress import ConsoleObserver

_STATUS_STYLE = {"ok": "bold green", "degraded": "bold yellow", "failed": "bold red",
                 "aborted": "bold red", "running": "bold yellow"}  # fmt: skip


def _sig(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def describe_point(point: Mapping[str, Any] | None) -> str:
    """``350 W, SM 1200 MHz, batch 256, fp16`` (the axes set)."""
    if not point:
        return "default settings"
    parts = []
    if point.get("power_limit_w") is not None:
        parts.append(f"{point['power_limit_w']:g} W")
    if point.get("sm_clock_mhz") is not None:
        parts.append(f"SM {point['sm_clock_mhz']} MHz")
    if point.get("mem_clock_mhz") is not None:
        parts.append(f"memory {point['mem_clock_mhz']} MHz")
    if point.get("batch_size") is not None:
        parts.append(f"batch {point['batch_size']}")
    if point.get("precision") is not None:
        parts.append(str(point["precision"]))
    return ", ".join(parts) or "default settings"


class MaxqConsole(ConsoleObserver):
    """The session bars of every point, plus a line when each point starts and ends."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self._expected: int | None = None
        self._noted: set[str] = set()

    def note(self, text: str) -> None:
        """Each note once (every point's session repeats the meters' notes)."""
        if text not in self._noted:
            self._noted.add(text)
            super().note(text)

    def planned(self, plan: Mapping[str, Any]) -> None:
        """Print the plan in one line."""
        self._expected = int(plan.get("expected_measurements") or 0) or None
        sim = " (SIMULATED)" if plan.get("simulated") else ""
        expected, grid = plan.get("expected_measurements"), plan.get("grid_points")
        self.console.print(
            f"[bold]plan[/bold]: {plan.get('search')} search, about {expected} of {grid} grid "
            f"points + 2 baselines, about {_minutes(plan.get('estimated_s'))}{sim}",
            highlight=False,
        )

    def point_started(self, index: int, role: str, what: str) -> None:
        """A header line for the point."""
        of = f"/~{self._expected + 2}" if self._expected else ""
        self.console.print(f"[bold cyan][{index}{of}][/bold cyan] {role}: {what}", highlight=False)

    def point_finished(self, entry: Mapping[str, Any]) -> None:
        """The point's headline figures."""
        if entry.get("usable"):
            text = (
                f"  {_sig(entry.get('samples_per_second'))} samples/s at "
                f"{_sig(entry.get('average_power_w'))} W: {_sig(entry.get('objective'))} "
                f"± {_sig(entry.get('objective_uncertainty'), 2)}"
            )
            if entry.get("setting_binds") is False:
                text += "  (the setting did not bind)"
            self.console.print(text, highlight=False)
        else:
            why = "; ".join(entry.get("problems") or []) or str(entry.get("status"))
            self.console.print(f"  [yellow]not usable: {why}[/yellow]", highlight=False)


def _minutes(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def render_plan(console: Console, record: Mapping[str, Any]) -> None:
    """``--dry-run``: the axes, the points, the time; nothing was changed."""
    plan = record.get("plan") or {}
    axes = plan.get("axes") or {}
    sim = "  [bold magenta]SIMULATED[/bold magenta]" if record.get("simulated") else ""
    console.print(
        f"[bold]dry run[/bold] of sweep {record.get('sweep_id')}: nothing was changed{sim}"
    )
    t = Table(box=box.SIMPLE_HEAD, show_header=False)
    t.add_column("what", style="dim")
    t.add_column("value")
    for name, values in axes.items():
        if values:
            t.add_row(name, ", ".join(str(v) for v in values))
    t.add_row("grid points", str(plan.get("grid_points")))
    t.add_row(
        f"{plan.get('search')} search",
        f"about {plan.get('expected_measurements')} measurements + 2 baselines",
    )
    t.add_row(
        "per point",
        f"{plan.get('settle_s'):g} s settle + {plan.get('warmup_s'):g} s warm-up + "
        f"{plan.get('point_duration_s'):g} s measured",
    )
    t.add_row("time", f"about {_minutes(plan.get('estimated_s'))} (+ preparing each workload once)")
    if plan.get("power_limit_range_w"):
        lo, hi = plan["power_limit_range_w"]
        t.add_row(
            "power limits allowed",
            f"{lo:g}-{hi:g} W (default {plan.get('default_power_limit_w'):g} W)",
        )
    t.add_row(
        "changes GPU settings",
        "yes (journaled, restored at the end)"
        if plan.get("changes_settings")
        else "no (batch sizes and precisions only)",
    )
    if plan.get("auto_batch_size") is not None:
        t.add_row("batch size auto", str(plan["auto_batch_size"]))
    for gpu in record.get("gpus") or []:
        t.add_row("GPU", f"{gpu.get('label')}  {gpu.get('uuid')}")
    console.print(t)


def render_sweep(console: Console, record: Mapping[str, Any]) -> None:
    """The record: header, points, fronts, recommendation, restore, problems."""
    status = str(record.get("status"))
    obj = record.get("objective") or {}
    head = Text.assemble(
        ("sweep ", "dim"), (str(record.get("sweep_id")), "bold"), "  ",
        (status, _STATUS_STYLE.get(status, "")), ("  objective ", "dim"),
        f"{obj.get('name')} ({obj.get('unit')})", ("  source ", "dim"), str(record.get("source")),
    )  # fmt: skip
    if record.get("simulated"):
        head.append("  SIMULATED", style="bold magenta")
    console.print(head)
    console.print(_points_table(record))
    _render_fronts(console, record)
    rec = record.get("recommendation")
    if isinstance(rec, Mapping):
        style = "bold green" if (rec.get("gain") or {}).get("significant") else "bold yellow"
        console.print(Text.assemble(("recommendation: ", "bold"), (str(rec.get("summary")), style)))
    else:
        console.print(Text("no recommendation", style="bold yellow"))
    search = record.get("search") or {}
    extra = [p["overhead_s"] for p in record.get("points") or [] if p.get("overhead_s")]
    per_point = (
        f", {sum(extra) / len(extra):.1f} s per point beyond its measured window" if extra else ""
    )
    console.print(
        f"[dim]search {search.get('strategy')}: {search.get('measurements')} measurements "
        f"of a {search.get('grid_points')}-point grid, {search.get('workloads_prepared')} "
        f"workload(s) prepared{per_point}[/dim]",
        highlight=False,
    )
    _render_restore(console, record)
    for p in record.get("problems") or []:
        console.print(Text("• " + p, style="yellow"))


_ROLE = {"baseline-start": "start", "baseline-end": "end", "point": ""}


def short_point(point: Mapping[str, Any] | None) -> str:
    """``350W SM1200 b256 fp16``: a point in a table cell."""
    if not point:
        return "default"
    parts = []
    formats = (
        ("power_limit_w", "{:g}W"),
        ("sm_clock_mhz", "SM{}"),
        ("mem_clock_mhz", "mem{}"),
        ("batch_size", "b{}"),
        ("precision", "{}"),
    )
    for key, fmt in formats:
        if point.get(key) is not None:
            parts.append(fmt.format(point[key]))
    return " ".join(parts) or "default"


def _points_table(record: Mapping[str, Any]) -> Table:
    obj = record.get("objective") or {}
    latency = (record.get("spec") or {}).get("scenario") != "offline"
    t = Table(title="Points", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    t.add_column("#", justify="right")
    t.add_column("role")
    t.add_column("settings", no_wrap=True)
    t.add_column("status")
    t.add_column("samples/s", justify="right")
    t.add_column("W", justify="right")
    t.add_column(str(obj.get("unit") or "objective"), justify="right", no_wrap=True)
    t.add_column("binds")
    if latency:
        t.add_column("p99 ms", justify="right")
    for p in record.get("points") or []:
        status = Text(str(p.get("status")), style=_STATUS_STYLE.get(str(p.get("status")), ""))
        if p.get("status") == "ok" and not p.get("usable"):
            status = Text("not usable", style="yellow")
        binds = p.get("setting_binds")
        row: list[str | Text] = [
            str(p.get("index")), _ROLE.get(str(p.get("role")), str(p.get("role"))),
            short_point(p.get("point")), status, _sig(p.get("samples_per_second")),
            _sig(p.get("average_power_w")),
            f"{_sig(p.get('objective'))} ± {_sig(p.get('objective_uncertainty'), 2)}",
            "—" if binds is None or p.get("role") != "point" else ("yes" if binds else "no"),
        ]  # fmt: skip
        if latency:
            row.append(_sig((p.get("latency_ms") or {}).get("p99"), 3))
        t.add_row(*row)
    return t


def _render_fronts(console: Console, record: Mapping[str, Any]) -> None:
    fronts = record.get("pareto") or {}
    offline = (record.get("spec") or {}).get("scenario") == "offline"
    keys = [("throughput_power", "Pareto front, throughput vs power")]
    if not offline:  # an Offline run is one query: its latency says nothing
        keys.append(("latency_energy", "Pareto front, latency vs energy per query"))
    for key, title in keys:
        items: Sequence[Mapping[str, Any]] = fronts.get(key) or []
        if not items:
            continue
        console.print(f"[bold]{title}[/bold]")
        for item in items:
            text = (
                f"  {describe_point(item.get('point'))}: {_sig(item.get('samples_per_second'))}"
                f" samples/s, {_sig(item.get('average_power_w'))} W"
            )
            if not offline:
                p99 = _sig((item.get("latency_ms") or {}).get("p99"), 3)
                text += f", {_sig(item.get('joules_per_query'))} J/query, p99 {p99} ms"
            console.print(text, highlight=False)


def _render_restore(console: Console, record: Mapping[str, Any]) -> None:
    restore = record.get("restore")
    plan = record.get("plan") or {}
    if not plan.get("changes_settings"):
        console.print("[dim]no GPU setting was changed (batch sizes and precisions only)[/dim]")
    elif isinstance(restore, Mapping) and restore.get("verified"):
        gpus = ", ".join(restore.get("gpus") or [])
        console.print(f"[green]settings restored and verified:[/green] {gpus}", highlight=False)
    elif isinstance(restore, Mapping):
        console.print(f"[bold red]RESTORE FAILED:[/bold red] {restore.get('error')}")
        console.print("[dim]hint: run `infergy maxq restore`[/dim]")


def render_sweeps(console: Console, records: Sequence[Mapping[str, Any]]) -> None:
    """The stored sweeps, newest first."""
    t = Table(header_style="bold")
    for col in ("sweep id", "status", "objective", "measurements", "recommendation"):
        t.add_column(col)
    for r in records:
        rec = r.get("recommendation")
        t.add_row(
            str(r.get("sweep_id")) + ("  SIMULATED" if r.get("simulated") else ""),
            Text(str(r.get("status")), style=_STATUS_STYLE.get(str(r.get("status")), "")),
            str((r.get("objective") or {}).get("name")),
            str((r.get("search") or {}).get("measurements")),
            str(rec.get("summary")) if isinstance(rec, Mapping) else "—",
        )
    console.print(t)
