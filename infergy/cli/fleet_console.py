"""The fleet on the screen: the nodes table, a campaign's events and its comparison table.

Simulated sources are starred (``*``) with a caption, as in the result tables; absent
figures are ``—``; drift (another version or config digest than most nodes') is marked ``!``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from infergy.cli.console_cells import SIMULATED_STAR
from infergy.daemon.fleet.presence import NodeView

_STATE_STYLE = {"online": "green", "stale": "yellow", "offline": "red"}
_PHASE_STYLE = {"done": "green", "rejected": "red", "failed": "red", "lost": "red",
                "timed_out": "red", "unreachable": "yellow", "no_reply": "yellow"}  # fmt: skip


class ConsoleObserver:
    """Prints each campaign event as one line: ``HH:MM:SS node: what``."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def event(self, node: str, what: str) -> None:  # noqa: D102
        stamp = time.strftime("%H:%M:%S")
        self.console.print(Text.assemble((stamp, "dim"), " ", (node, "bold"), ": ", what))


def render_nodes(
    console: Console,
    views: Sequence[NodeView],
    drifted: Mapping[str, Sequence[str]],
    *,
    now_unix_s: float,
) -> None:
    """The nodes seen on the broker, one row each."""
    if not views:
        console.print(Text("no infergy node has a status on this broker", style="yellow"))
        return
    t = Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, padding=(0, 1, 0, 0))
    for name in ("node", "state", "seen", "version", "config", "GPUs", "limit W", "idle W",
                 "analyzer", "job", "last result"):  # fmt: skip
        t.add_column(name, overflow="fold", justify="right" if name.endswith(" W") else "left")
    simulated = False
    for v in views:
        body, drift = v.body, set(drifted.get(v.node, ()))
        sim = bool(body.get("simulated"))
        simulated |= sim
        seen = v.seen_unix_s
        t.add_row(
            Text(v.node + (SIMULATED_STAR if sim else ""), style="bold"),
            Text(
                v.state + (f" ({body['reason']})" if body.get("reason") else ""),
                style=_STATE_STYLE[v.state],
            ),
            "—" if seen is None else f"{max(0.0, now_unix_s - seen):.0f} s ago",
            _drifted(v.version or ("old" if v.legacy else "—"), "version" in drift),
            _drifted((v.config_digest or "—").removeprefix("sha256:")[:8], "config" in drift),
            _gpus(v.gpus),
            _limits(v.gpus),
            _idle(body.get("idle_power_w")),
            _analyzers(body.get("analyzers")),
            _job(body.get("current_job"), body.get("queued_jobs")),
            _last(body.get("last_result")),
        )
    _print(console, t)
    if any(drifted.values()):
        console.print(Text("! differs from most nodes (version or config digest)", style="yellow"))
    if simulated:
        console.print(Text(f"{SIMULATED_STAR} SIMULATED hardware: not measurements",
                           style="yellow"))  # fmt: skip


def render_comparison(console: Console, kind: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """A campaign's comparison, one row per node."""
    t = Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, padding=(0, 1, 0, 0))
    if kind == "maxq":
        names = ["node", "phase", "status", "recommended", "value", "gain (95 %)"]
    else:
        names = ["node", "phase", "status", "source", "samples/s", "W", "samples/s/W", "mJ/query"]
    for name in names:
        t.add_column(name, overflow="fold")
    for r in rows:
        phase = Text(str(r["phase"]).replace("_", " "), style=_PHASE_STYLE.get(r["phase"], ""))
        sim = SIMULATED_STAR if r.get("simulated") else ""
        cells: list[Text | str] = [Text(str(r["node"]), style="bold"), phase,
                                   str(r.get("status") or "—")]  # fmt: skip
        if kind == "maxq":
            cells += [_settings(r), _pm(r.get("value"), r.get("value_uncertainty"), r.get("unit")),
                      _gain(r)]  # fmt: skip
        else:
            cells += [
                (r.get("source") or "—") + sim,
                _pm(r.get("samples_per_second"), None),
                _pm(r.get("average_watts"), r.get("average_watts_uncertainty")),
                _pm(r.get("samples_per_second_per_watt"),
                    r.get("samples_per_second_per_watt_uncertainty")),
                _pm(r.get("millijoules_per_query"), r.get("millijoules_per_query_uncertainty")),
            ]  # fmt: skip
        t.add_row(*cells)
    _print(console, t)
    for r in rows:
        if r.get("errors"):
            console.print(Text.assemble((f"{r['node']}: ", "bold"), str(r["errors"])),
                          style="yellow")  # fmt: skip
    if any(r.get("simulated") for r in rows):
        console.print(Text(f"{SIMULATED_STAR} SIMULATED, not measurements", style="yellow"))


def _print(console: Console, table: Table) -> None:
    """In a pipe, at the table's natural width (one line per node, nothing folded)."""
    if not console.is_terminal:
        natural = console.measure(table, options=console.options.update_width(10_000)).maximum
        console = Console(file=console.file, width=natural, color_system=None)
    console.print(table)


def _drifted(text: str, drift: bool) -> Text:
    return Text(text + ("!" if drift else ""), style="bold yellow" if drift else "")


def _gpus(gpus: Sequence[Mapping[str, Any]]) -> str:
    if not gpus:
        return "—"
    names: dict[str, int] = {}
    for g in gpus:
        name = str(g.get("name") or "?").removeprefix("NVIDIA ")
        names[name] = names.get(name, 0) + 1
    return ", ".join(f"{n}x {name}" for name, n in names.items())


def _limits(gpus: Sequence[Mapping[str, Any]]) -> str:
    limits = sorted({g["power_limit_w"] for g in gpus if isinstance(g.get("power_limit_w"), float)})
    return "/".join(f"{w:.0f}" for w in limits) or "—"


def _idle(idle: object) -> str:
    if not isinstance(idle, Mapping) or not idle:
        return "—"
    pick = next((k for k in ("ac", "gpus") if k in idle), None)
    if pick is None:
        gpus = [v for k, v in idle.items() if str(k).startswith("gpu") and isinstance(v, float)]
        return f"{sum(gpus):.0f} (gpus)" if gpus else "—"
    return f"{float(idle[pick]):.0f} ({pick})"


def _analyzers(analyzers: object) -> Text:
    if not isinstance(analyzers, list) or not analyzers:
        return Text("—")
    parts = Text()
    for i, a in enumerate(a for a in analyzers if isinstance(a, Mapping)):
        up = bool(a.get("up"))
        parts.append(("" if i == 0 else ", ") + str(a.get("source")) + (" up" if up else " down"),
                     style="" if up else "red")  # fmt: skip
        if a.get("simulated"):
            parts.append(SIMULATED_STAR, style="yellow")
    return parts


def _job(job: object, queued: object) -> str:
    text = "—"
    if isinstance(job, Mapping):
        text = f"{job.get('kind')} {job.get('run_id')} {job.get('state')}"
    if isinstance(queued, int) and queued:
        text += f" (+{queued} queued)"
    return text


def _last(last: object) -> str:
    if not isinstance(last, Mapping):
        return "—"
    return f"{last.get('status')} {last.get('run_id')}"


def _pm(value: object, uncertainty: object, unit: object = None) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "—"
    text = f"{value:.4g}"
    if isinstance(uncertainty, int | float) and not isinstance(uncertainty, bool):
        text += f" ± {uncertainty:.2g}"
    return text + (f" {unit}" if unit else "")


def _settings(r: Mapping[str, Any]) -> str:
    parts = []
    if r.get("power_limit_w") is not None:
        parts.append(f"{float(r['power_limit_w']):.0f} W")
    for key, unit in (("sm_clock_mhz", "MHz SM"), ("mem_clock_mhz", "MHz mem")):
        if r.get(key) is not None:
            parts.append(f"{float(r[key]):.0f} {unit}")
    if r.get("batch_size") is not None:
        parts.append(f"batch {r['batch_size']}")
    if r.get("precision"):
        parts.append(str(r["precision"]))
    return ", ".join(parts) or "—"


def _gain(r: Mapping[str, Any]) -> str:
    rel, low, high = r.get("gain_relative"), r.get("gain_low"), r.get("gain_high")
    if not isinstance(rel, float):
        return "—"
    interval = f" ({low:+.1%} to {high:+.1%})" if isinstance(low, float) and isinstance(
        high, float) else ""  # fmt: skip
    return f"{rel:+.1%}{interval}" + ("" if r.get("significant") else ", not significant")
