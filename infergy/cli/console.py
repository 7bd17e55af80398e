"""Human output: a result as rich tables (the JSON form is the contract; this is for people).

Text that comes from elsewhere (an error's message and hint, a note, a path, a problem) is
never parsed as rich markup: ``'infergy[torch]'`` or ``set [store] path`` would lose their
bracketed words, and ``[/x]`` would raise. It is printed as :class:`~rich.text.Text` through
:func:`print_error` and :func:`print_note`, one line each (``soft_wrap``: never folded at the
terminal's width, so ``grep`` and the tests see the whole line).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from infergy.cli.console_cells import num as _num
from infergy.cli.console_cells import sig as _sig
from infergy.cli.console_cells import simulated_caption as _simulated_caption
from infergy.cli.console_cells import source_cell as _source_cell
from infergy.cli.console_cells import source_width as _source_width
from infergy.cli.console_llm import render_generative
from infergy.core.compare import Comparison

SIMULATED_LABEL = "(SIMULATED)"
"""How the screen marks a source whose readings are not measurements."""
_KIND_SHORT = {"analyzer": "ac", "replay": "file"}
_STATUS_STYLE = {"ok": "bold green", "degraded": "bold yellow", "failed": "bold red"}


def print_error(
    console: Console, message: str, hint: str | None = None, *, label: str = "error"
) -> None:
    """``<label>: <message>`` and, if given, ``hint: <hint>``: literal text, one line each."""
    console.print(Text.assemble((f"{label}:", "bold red"), " ", message), soft_wrap=True)
    if hint:
        console.print(Text.assemble(("hint:", "dim"), " ", hint), soft_wrap=True)


def print_note(console: Console, text: str, *, label: str = "note", style: str = "yellow") -> None:
    """``<label>: <text>`` as literal text on one line (notes, file locations, warnings)."""
    console.print(Text.assemble((f"{label}:", style), " ", text), soft_wrap=True)


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
        console.print(
            _efficiency_table(
                result["efficiency"], result.get("mlperf") or {}, result.get("power") or {}
            )
        )
    if result.get("generative"):
        render_generative(console, result["generative"], result.get("power") or {})
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
            _kind(p),
            _sig(p.get("energy_joules"), 6),
            _sig(p.get("uncertainty_joules"), 2),
            _num(p.get("average_watts"), ".1f"),
            _num(p.get("mlperf_average_watts"), ".1f"),
            _num(p.get("idle_watts"), ".1f"),
            cov_txt,
            _num(p.get("clock_offset_ms"), "+.1f"),
        )
    return t


def _kind(p: Mapping[str, Any]) -> Text:
    """The source's kind; an anchored counter says so (yellow when its samples drift)."""
    kind = _KIND_SHORT.get(str(p.get("kind")), str(p.get("kind")))
    anchoring = p.get("anchoring")
    if not anchoring:
        return Text(kind)
    drifted = bool(anchoring.get("drifted"))
    return Text(f"{kind}, anchored" + (" (drift)" if drifted else ""), "yellow" if drifted else "")


def _efficiency_table(
    eff: Mapping[str, Mapping[str, Any]],
    mlperf: Mapping[str, Any],
    power: Mapping[str, Mapping[str, Any]] | None = None,
) -> Table:
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
    t = Table(
        title="Efficiency", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
        caption=_simulated_caption(power or {}), caption_justify="left", caption_style="magenta",
    )  # fmt: skip
    t.add_column("source", no_wrap=True, min_width=_source_width(power))
    spread = "per-batch J p50 / p99" if per_batch else "per-query J p50 / p99"
    for title, _, _ in cols:
        t.add_column(title, justify="right")
    t.add_column(spread, justify="right")
    for name, e in eff.items():
        pq = e.get("per_batch_joules" if per_batch else "per_query_joules") or {}
        row = [_sig(e.get(key), digits) for _, key, digits in cols]
        row.append(" / ".join(_sig(pq.get(k), 3) for k in ("p50", "p99")) if pq else "—")
        t.add_row(_source_cell(name, (power or {}).get(name)), *row)
    return t


def _render_problems(console: Console, problems: Sequence[str]) -> None:
    for p in problems:
        style = "dim" if p.startswith("note:") else "yellow"
        console.print(Text("• " + p, style=style))


def render_runs(console: Console, rows: Sequence[Mapping[str, Any]]) -> None:
    """Print the stored runs, newest first, with the headline figures of their main source.

    The main source is wall power first (``RunSummary.headline_source``). A run id is never
    cut (``runs show`` and ``compare`` take it). In a pipe every column is shown and nothing
    folds: one line per run. On a terminal too narrow for that, the creation time and the
    workload are left out (``--json`` and ``runs show`` have them), the figures share one
    column, and what still does not fit folds, the id excepted.
    """
    table = _runs_table(rows, compact=False)
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    if not console.is_terminal:
        console = Console(file=console.file, width=natural, color_system=None)
    elif natural > console.width:
        table = _runs_table(rows, compact=True)
    console.print(table)
    if any(r.get("headline_simulated") for r in rows):
        console.print(Text("* SIMULATED: an emulated source, not a measurement", style="yellow"))


def _runs_table(rows: Sequence[Mapping[str, Any]], *, compact: bool) -> Table:
    per_query = [r.get("scenario") in ("single-stream", "multi-stream") for r in rows]
    t = Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, padding=(0, 1, 0, 0))
    longest = max((len(str(r.get("run_id"))) for r in rows), default=6)
    t.add_column("run id", no_wrap=True, min_width=longest)
    names = ["status", "scenario"] if compact else [
        "created (UTC)", "status", "scenario", "workload", "source"]  # fmt: skip
    for name in names:
        t.add_column(name, overflow="fold")
    figures = ["samples/s", "W"]
    figures += ["samples/s/W"] if not all(per_query) or not rows else []
    figures += ["mJ/query"] if any(per_query) else []
    if compact:  # the headline figures in one column that folds between them
        t.add_column("source: headline figures", overflow="fold")
    else:
        for name in figures:
            t.add_column(name, justify="right", no_wrap=True)
    for r, pq in zip(rows, per_query, strict=True):
        status = str(r.get("status"))
        source = Text(str(r.get("headline_source") or "—"))
        if r.get("headline_source") and r.get("headline_simulated"):
            source.append("*", style="yellow")
        cells: dict[str, Text | str] = {
            "created (UTC)": Text(_utc(r.get("created_unix_ns"))),
            "status": Text(status, style=_STATUS_STYLE.get(status, "")),
            "scenario": Text(str(r.get("scenario") or "—")),
            "workload": Text("/".join(str(r[k]) for k in ("backend", "model") if r.get(k)) or "—"),
            "source": source,
            "samples/s": _sig(r.get("samples_per_second")),
            "W": _num(r.get("average_watts"), ".1f"),
            "samples/s/W": "—" if pq else _sig(r.get("samples_per_second_per_watt")),
            "mJ/query": _sig(_mj_per_query(r)) if pq else "—",
        }
        if compact:
            shown = [f"{n}={cells[n]}" for n in figures if cells[n] != "—"]  # folds between
            headline = Text.assemble(source, ": " if shown else "", "  ".join(shown))
            t.add_row(Text(str(r.get("run_id"))), *(cells[n] for n in names), headline)
        else:
            t.add_row(Text(str(r.get("run_id"))), *(cells[n] for n in [*names, *figures]))
    return t


def _mj_per_query(r: Mapping[str, Any]) -> float | None:
    """MLPerf's mJ/query where the result has it, else the time-weighted J/query in mJ."""
    mj = r.get("millijoules_per_query_mlperf")
    if mj is None and r.get("joules_per_query") is not None:
        mj = 1e3 * float(r["joules_per_query"])
    return None if mj is None else float(mj)


def _utc(t_ns: object) -> str:
    if not isinstance(t_ns, int):
        return "—"
    return datetime.fromtimestamp(t_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


_FIGURE_LABELS = {
    "window.duration_s": "window s",
    "performance.samples_per_second": "samples/s",
    "performance.queries": "queries",
    "performance.samples": "samples",
    "energy_joules": "energy J",
    "average_watts": "avg W",
    "mlperf_average_watts": "MLPerf W",
    "idle_watts": "idle W",
    "coverage": "coverage",
    "samples_per_second_per_watt": "samples/s/W",
    "joules_per_query": "J/query",
    "millijoules_per_query_mlperf": "MLPerf mJ/query",
    "dynamic_joules_per_query": "dyn J/query",
}


def render_comparison(
    console: Console, comparison: Comparison, a: Mapping[str, Any], b: Mapping[str, Any]
) -> None:
    """Two runs side by side: figures with B - A and its uncertainty, then differing settings."""
    for tag, r in (("A", a), ("B", b)):
        status = str(r.get("status"))
        console.print(
            Text.assemble(
                (f"{tag} ", "bold"), (str(r.get("run_id")), "bold"), "  ",
                (status, _STATUS_STYLE.get(status, "")), ("  scenario ", "dim"),
                str(r.get("scenario")),
            ),
            soft_wrap=True,
        )  # fmt: skip
    simulated = {
        name
        for r in (a, b)
        for name, p in (r.get("power") or {}).items()
        if isinstance(p, Mapping) and (p.get("simulated") is True or p.get("kind") == "sim")
    }
    t = Table(title="Figures", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    t.add_column("figure", overflow="fold")
    for col in ("A", "B", "B - A", "±", "%"):
        t.add_column(col, justify="right", no_wrap=True)
    for f in comparison.figures:
        rel = f.relative
        t.add_row(
            _figure_label(f.name, simulated),
            _sig(f.a),
            _sig(f.b),
            _sig(_rounded_delta(f.delta, f.a, f.b)),
            _sig(f.delta_uncertainty, 2),
            "—" if rel is None else f"{100 * rel:+.1f}",
        )
    console.print(t)
    if simulated:
        console.print(Text("* SIMULATED: an emulated source, not a measurement", style="yellow"))
    if not comparison.settings:
        console.print(Text("settings: the same", style="dim"))
        return
    s = Table(title="Settings that differ", title_justify="left", header_style="bold",
              box=box.SIMPLE_HEAD)  # fmt: skip
    for col in ("setting", "A", "B"):
        s.add_column(col, overflow="fold")
    for d in comparison.settings:
        s.add_row(Text(d.name), Text(_setting(d.a)), Text(_setting(d.b)))
    console.print(s)


def _rounded_delta(delta: float | None, a: float | None, b: float | None) -> float | None:
    """A delta within float rounding of both values is shown as 0."""
    if delta is None or a is None or b is None:
        return delta
    return 0.0 if abs(delta) <= 1e-12 * max(abs(a), abs(b)) else delta


def _figure_label(name: str, simulated: set[str]) -> Text:
    if name in _FIGURE_LABELS:
        return Text(_FIGURE_LABELS[name])
    if name.startswith("performance.latency_ms."):
        return Text(f"latency {name.rpartition('.')[2]} ms")
    _section, source, key = name.split(".", 2)
    label = Text(source)
    if source in simulated:
        label.append("*", style="yellow")
    label.append(f" {_FIGURE_LABELS.get(key, key)}")
    return label


def _setting(value: object) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value)
