"""Human output: a result as rich tables (the JSON form is the contract; this is for people)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

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
    console.print(_what_ran(result))
    lat = perf.get("latency_ms") or {}
    batches = perf.get("batches")
    console.print(
        Text.assemble(
            ("queries ", "dim"),
            _num(perf.get("queries"), ","),
            ("  samples ", "dim"),
            _num(perf.get("samples"), ","),
            *((("  batches ", "dim"), _num(batches, ",")) if batches is not None else ()),
            ("  samples/s ", "dim"),
            _num(perf.get("samples_per_second"), ",.1f"),
            ("  latency p50/p90/p99 ", "dim"),
            " / ".join(_num(lat.get(k), ".3f") for k in ("p50", "p90", "p99")) + " ms",
        )
    )
    if result.get("power"):
        console.print(_power_table(result["power"]))
        console.print(_efficiency_table(result["efficiency"], result.get("mlperf") or {}))
    _render_problems(console, result.get("problems") or [])


def _what_ran(result: Mapping[str, Any]) -> Text:
    """Model, backend, precision, batch, devices, and LoadGen's verdict (MLPerf's scenario)."""
    parts: list[tuple[str, str] | str] = []
    for label, key in (("model ", "model"), ("backend ", "backend"), ("precision ", "precision"),
                       ("batch ", "batch_size")):  # fmt: skip
        if result.get(key) is not None:
            parts += [(label, "dim"), str(result[key]), "  "]
    if result.get("devices"):
        parts += [("devices ", "dim"), ",".join(map(str, result["devices"])), "  "]
    mlperf = result.get("mlperf") or {}
    validity = (result.get("loadgen") or {}).get("validity") or mlperf.get("validity")
    if mlperf.get("inferred"):
        parts += [("MLPerf ", "dim"), f"{mlperf['scenario']} inferred from "
                  f"{mlperf['run_scenario']}  "]  # fmt: skip
    if validity is not None:
        style = "green" if validity == "VALID" else "bold red"
        parts += [("LoadGen ", "dim"), (str(validity), style)]
    return Text.assemble(*parts)


def _power_table(power: Mapping[str, Mapping[str, Any]]) -> Table:
    t = Table(title="Power", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    t.add_column("source")
    t.add_column("kind")
    for col in ("energy J", "± J", "avg W", "MLPerf W", "idle W", "cover", "offset ms"):
        t.add_column(col, justify="right")
    for name, p in power.items():
        cov = p.get("coverage")
        cov_txt = Text(_num(cov, ".3f"), style="yellow" if cov is not None and cov < 0.95 else "")
        t.add_row(
            name,
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


def _efficiency_table(eff: Mapping[str, Mapping[str, Any]], mlperf: Mapping[str, Any]) -> Table:
    """Time-weighted figures, then MLPerf's in its scenario's unit (mJ/query or W, samples/J).

    J/sample stands beside J/query where they differ (Offline: one query of every sample;
    MultiStream: 8 samples a query); Offline's per-row energies are per batch.
    """
    rows = list(eff.values())
    differ = any(
        e.get("joules_per_sample") is not None
        and e.get("joules_per_query") is not None
        and not math.isclose(e["joules_per_sample"], e["joules_per_query"])
        for e in rows
    )
    per_batch = any(e.get("per_batch_joules") for e in rows)
    eff_unit = str(mlperf.get("efficiency_unit") or "samples/J")
    eff_key = "tokens_per_joule_mlperf" if eff_unit == "tokens/J" else "samples_per_joule_mlperf"
    cols: list[tuple[str, str, int]] = [("samples/s/W", "samples_per_second_per_watt", 4),
                                        ("J/query", "joules_per_query", 4)]  # fmt: skip
    if differ:
        cols.append(("J/sample", "joules_per_sample", 4))
    if mlperf.get("power_unit") == "millijoules":
        cols.append(("MLPerf mJ/query", "millijoules_per_query_mlperf", 6))
    cols += [(f"MLPerf {eff_unit}", eff_key, 4), ("dyn J/query", "dynamic_joules_per_query", 4)]
    t = Table(title="Efficiency", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    t.add_column("source")
    spread = "per-batch J p50 / p99" if per_batch else "per-query J p50 / p99"
    for title, _, _ in cols:
        t.add_column(title, justify="right")
    t.add_column(spread, justify="right")
    for name, e in eff.items():
        pq = e.get("per_batch_joules" if per_batch else "per_query_joules") or {}
        row = [_sig(e.get(key), digits) for _, key, digits in cols]
        row.append(" / ".join(_sig(pq.get(k), 3) for k in ("p50", "p99")) if pq else "—")
        t.add_row(name, *row)
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
