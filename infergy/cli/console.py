"""Human output: a result as rich tables (the JSON form is the contract; this is for people)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

SIMULATED_LABEL = "(SIMULATED)"
"""How the screen marks a source whose readings are not measurements."""
SIMULATED_STAR = "*"
"""The tables' mark of a simulated source, explained in the table's caption."""
_KIND_SHORT = {"analyzer": "ac", "replay": "file"}
_STATUS_STYLE = {"ok": "bold green", "degraded": "bold yellow", "failed": "bold red"}


def _num(value: float | None, fmt: str = ".4g", unit: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:{fmt}}{unit}"


def _sig(value: float | None, digits: int = 4) -> str:
    """``digits`` significant digits without an exponent (12,345 / 6.25 / 0.0123)."""
    if value is None:
        return "—"
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def render_result(console: Console, result: Mapping[str, Any]) -> None:
    """Print one result: header, per-source power and efficiency, then problems."""
    status = str(result["status"])
    perf = result.get("performance") or {}
    win = result["window"]
    head = Text.assemble(
        ("run ", "dim"),
        (str(result["run_id"]), "bold"),
        "  ",
        (status, _STATUS_STYLE.get(status, "")),
        ("  scenario ", "dim"),
        str(result["scenario"]),
        ("  window ", "dim"),
        f"{win['duration_s']:.3f} s",
    )
    console.print(head)
    lat = perf.get("latency_ms") or {}
    console.print(
        Text.assemble(
            ("queries ", "dim"),
            _num(perf.get("queries"), ","),
            ("  samples ", "dim"),
            _num(perf.get("samples"), ","),
            ("  samples/s ", "dim"),
            _num(perf.get("samples_per_second"), ",.1f"),
            ("  latency p50/p90/p99 ", "dim"),
            " / ".join(_num(lat.get(k), ".3f") for k in ("p50", "p90", "p99")) + " ms",
        )
    )
    if result.get("power"):
        console.print(_power_table(result["power"]))
        console.print(
            _efficiency_table(result["efficiency"], str(result["scenario"]), result["power"])
        )
    _render_problems(console, result.get("problems") or [])


def _power_table(power: Mapping[str, Mapping[str, Any]]) -> Table:
    t = Table(
        title="Power", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
        caption=_simulated_caption(power), caption_justify="left", caption_style="magenta",
    )  # fmt: skip
    t.add_column("source", no_wrap=True, min_width=_source_width(power))
    t.add_column("kind")
    for col in ("energy J", "± J", "avg W", "MLPerf W", "idle W", "cover", "offset ms"):
        t.add_column(col, justify="right")
    for name, p in power.items():
        cov = p.get("coverage")
        cov_txt = Text(_num(cov, ".3f"), style="yellow" if cov is not None and cov < 0.95 else "")
        t.add_row(
            _source_cell(name, p),
            _KIND_SHORT.get(str(p.get("kind")), str(p.get("kind"))),
            _sig(p.get("energy_joules"), 6),
            _sig(p.get("uncertainty_joules"), 2),
            _num(p.get("average_watts"), ".1f"),
            _num(p.get("mlperf_average_watts"), ".1f"),
            _num(p.get("idle_watts"), ".1f"),
            cov_txt,
            _num(p.get("clock_offset_ms"), "+.1f"),
        )
    return t


def _source_width(power: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Wide enough for every source cell: a mark is never cut off."""
    return max((len(_source_cell(n, p)) for n, p in (power or {}).items()), default=6)


def _source_cell(name: str, power: Mapping[str, Any] | None) -> Text:
    """The source's name, starred when its readings are not measurements (see the caption)."""
    if power is not None and power.get("simulated"):
        return Text.assemble(name, (SIMULATED_STAR, "bold magenta"))
    return Text(name)


def _simulated_caption(power: Mapping[str, Mapping[str, Any]]) -> str | None:
    names = [n for n, p in power.items() if p.get("simulated")]
    if not names:
        return None
    return f"{SIMULATED_STAR} SIMULATED, not measurements: {', '.join(names)}"


def _efficiency_table(
    eff: Mapping[str, Mapping[str, Any]],
    scenario: str,
    power: Mapping[str, Mapping[str, Any]] | None = None,
) -> Table:
    per_query_metric = scenario in ("single-stream", "multi-stream")
    t = Table(
        title="Efficiency", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
        caption=_simulated_caption(power or {}), caption_justify="left", caption_style="magenta",
    )  # fmt: skip
    t.add_column("source", no_wrap=True, min_width=_source_width(power))
    cols = ["samples/s/W", "J/query", "dyn J/query", "per-query J p50 / p99"]
    if per_query_metric:
        cols.insert(2, "MLPerf mJ/query")
    for c in cols:
        t.add_column(c, justify="right")
    for name, e in eff.items():
        pq = e.get("per_query_joules") or {}
        row = [
            _sig(e.get("samples_per_second_per_watt")),
            _sig(e.get("joules_per_query")),
            _sig(e.get("dynamic_joules_per_query")),
            " / ".join(_sig(pq.get(k), 3) for k in ("p50", "p99")) if pq else "—",
        ]
        if per_query_metric:
            row.insert(2, _sig(e.get("millijoules_per_query_mlperf"), 6))
        t.add_row(_source_cell(name, (power or {}).get(name)), *row)
    return t


def _render_problems(console: Console, problems: Sequence[str]) -> None:
    for p in problems:
        style = "dim" if p.startswith("note:") else "yellow"
        console.print(Text("• " + p, style=style))


def render_runs(console: Console, rows: Sequence[Mapping[str, Any]]) -> None:
    """Print the stored runs, newest first."""
    t = Table(header_style="bold")
    for col in ("run id", "created (UTC)", "status", "scenario", "model", "backend"):
        t.add_column(col)
    for r in rows:
        status = str(r.get("status"))
        t.add_row(
            str(r.get("run_id")),
            str(r.get("created")),
            Text(status, style=_STATUS_STYLE.get(status, "")),
            str(r.get("scenario") or "—"),
            str(r.get("model") or "—"),
            str(r.get("backend") or "—"),
        )
    console.print(t)
