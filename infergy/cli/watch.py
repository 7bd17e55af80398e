"""``infergy watch``: live power in the terminal, like ``nvidia-smi dmon`` for every source.

A table refreshed in place (or, not on a terminal, printed each interval), or CSV rows like
``nvidia-smi --query-gpu=... --format=csv -l 1``: one row per source per interval. From the
local meters (``--meter``, default: as ``infergy run`` chooses them, without the emulated
analyzer) or from a running ``infergy serve`` (``--from http://127.0.0.1:8765``). Ctrl-C ends
it with exit code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from infergy.cli.common import ConfigOpt
from infergy.config.settings import Settings, load_settings
from infergy.daemon.watch import LocalWatch, RemoteWatch, WatchRow
from infergy.errors import InputError

CSV_HEADER = (
    "timestamp, source, power.draw [W], energy.since_start [J], clocks.sm [MHz], "
    "clocks.mem [MHz], clocks_event_reasons.active, simulated"
)
NA = "[N/A]"  # as nvidia-smi writes an absent value

_EPILOG = (
    "Examples:\n\n"
    "  infergy watch                              # the local meters, refreshed every second\n\n"
    "  infergy watch --format csv -l 1 > power.csv   # like nvidia-smi --query-gpu -l 1\n\n"
    "  infergy watch --from http://127.0.0.1:8765     # a running infergy serve\n\n"
    "  infergy watch --meter sim                  # a SIMULATED analyzer (a demo)"
)


def register(app: typer.Typer) -> None:
    """Add ``watch`` to the command line."""
    app.command(name="watch", epilog=_EPILOG)(watch)


def watch(
    *,
    meter: Annotated[
        list[str] | None,
        typer.Option(metavar="METER", help="nvml | rapl | sim | ptd://HOST:PORT; repeatable."),
    ] = None,
    from_url: Annotated[
        str | None,
        typer.Option("--from", metavar="URL", help="A running `infergy serve` (its /metrics)."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="table | csv (csv: no header repeat).")
    ] = "table",
    loop_s: Annotated[
        float,
        typer.Option("-l", "--loop", min=0.1, max=3600, metavar="SECONDS", help="Refresh period."),
    ] = 1.0,
    count: Annotated[
        int | None, typer.Option("-c", "--count", min=1, help="Stop after this many updates.")
    ] = None,
    all_signals: Annotated[
        bool, typer.Option("--all", help="Also the secondary signals (gpu0.samples, cpu.dram...).")
    ] = False,
    config: ConfigOpt = None,
) -> int:
    """Live power per source (GPUs, their sum, wall, CPU): watts, joules since start, clocks."""
    if fmt not in ("table", "csv"):
        msg = f"--format takes table or csv, not {fmt!r}"
        raise InputError(msg)
    if from_url is not None and meter:
        msg = "--from watches a running infergy serve; --meter chooses local meters: not both"
        raise InputError(msg)
    settings = load_settings(config)
    main = _watch(
        settings, meter or (), from_url, csv=fmt == "csv", loop_s=loop_s, count=count,
        all_signals=all_signals,
    )  # fmt: skip
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a watch ends
        asyncio.run(main)
    return 0


async def _watch(
    settings: Settings,
    meters: Sequence[str],
    from_url: str | None,
    *,
    csv: bool,
    loop_s: float,
    count: int | None,
    all_signals: bool,
) -> None:
    source: LocalWatch | RemoteWatch
    if from_url is not None:
        source = RemoteWatch(from_url, all_signals=all_signals)
    else:
        source = LocalWatch(settings, meters, all_signals=all_signals)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    async with source:
        for note in source.notes:
            err.print(Text(f"note: {note}", style="dim"))
        if csv:
            await _csv(source, loop_s, count)
        else:
            await _table(source, loop_s, count)


async def _ticks(
    source: LocalWatch | RemoteWatch, loop_s: float, count: int | None
) -> AsyncIterator[tuple[datetime, list[WatchRow]]]:
    n = 0
    loop = asyncio.get_running_loop()
    while count is None or n < count:
        started = loop.time()
        rows = await source.read()
        yield datetime.now(UTC), rows
        n += 1
        if count is None or n < count:
            await asyncio.sleep(max(0.0, loop_s - (loop.time() - started)))


async def _csv(source: LocalWatch | RemoteWatch, loop_s: float, count: int | None) -> None:
    out = sys.stdout
    out.write(CSV_HEADER + "\n")
    async for when, rows in _ticks(source, loop_s, count):
        stamp = when.astimezone().strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
        for r in rows:
            out.write(", ".join([stamp, r.source, *_fields(r)]) + "\n")
        out.flush()


def _fields(r: WatchRow) -> list[str]:
    def f(v: float | None, spec: str) -> str:
        return NA if v is None else format(v, spec)

    events = NA if r.clock_events is None else ("+".join(r.clock_events) or "none")
    return [
        f(r.power_w, ".2f"), f(r.energy_j, ".3f"), f(r.sm_clock_mhz, ".0f"),
        f(r.memory_clock_mhz, ".0f"), events, "SIMULATED" if r.simulated else "no",
    ]  # fmt: skip


async def _table(source: LocalWatch | RemoteWatch, loop_s: float, count: int | None) -> None:
    console = Console(highlight=False)
    if not console.is_terminal:
        async for when, rows in _ticks(source, loop_s, count):
            console.print(_render(when, rows))
        return
    with Live(console=console, auto_refresh=False, transient=False) as live:
        async for when, rows in _ticks(source, loop_s, count):
            live.update(_render(when, rows), refresh=True)


def _render(when: datetime, rows: Sequence[WatchRow]) -> Group:
    t = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    t.add_column("source")
    for col in ("W", "J since start", "SM MHz", "mem MHz"):
        t.add_column(col, justify="right")
    t.add_column("clock events")
    t.add_column("")
    for r in rows:
        power, energy, sm, mem, events, _sim = _fields(r)
        mark = Text("SIMULATED", style="bold magenta") if r.simulated else Text("")
        if not r.up:
            mark.append(" down", style="yellow")
        style = "" if r.source != "gpus" else "bold"
        t.add_row(Text(r.source, style=style), power, energy, sm, mem, events, mark)
    clock = when.astimezone().strftime("%H:%M:%S")
    head = Text.assemble(("infergy watch  ", "bold"), (clock, "dim"))
    return Group(head, t)
