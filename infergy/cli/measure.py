"""``infergy measure -- CMD ARGS``: run a command, measure it, print its energy like ``perf stat``.

The table goes to stderr (the command's own output is left alone), the run to the store
(``infergy runs show RUN_ID``), and infergy exits with the command's exit code (127 and one
line when it cannot be started). The command may mark phases: ``echo "begin load" >
"$INFERGY_MARK"`` ... ``echo "end load" > "$INFERGY_MARK"``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from infergy.cli.common import ConfigOpt, open_store
from infergy.cli.console import _STATUS_STYLE
from infergy.cli.console_cells import num as _num
from infergy.cli.console_cells import sig as _sig
from infergy.config.settings import load_settings
from infergy.daemon.command import measure_command
from infergy.errors import InputError
from infergy.exporters.files import write_run_files
from infergy.store.names import new_run_id

_EPILOG = (
    "Examples:\n\n"
    "  infergy measure -- python train.py --epochs 1\n\n"
    "  infergy measure --idle 10 --meter nvml -- ./serve-benchmark.sh\n\n"
    '  infergy measure -- sh -c \'echo "begin load" > $INFERGY_MARK; ./load; '
    'echo "end load" > $INFERGY_MARK; ./run\'\n\n'
    "Phases: the command writes 'begin NAME' / 'end NAME' lines to the FIFO $INFERGY_MARK.\n\n"
    "Exit code: the command's (128+N when a signal N killed it; 127 when it cannot start)."
)


def register(app: typer.Typer) -> None:
    """Add ``measure`` to the command line."""
    app.command(
        name="measure",
        epilog=_EPILOG,
        context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
    )(measure)


def measure(
    *,
    command: Annotated[
        list[str],
        typer.Argument(metavar="-- CMD [ARGS]...", help="The command to run and measure."),
    ],
    meter: Annotated[
        list[str] | None,
        typer.Option(
            metavar="METER",
            help="nvml | rapl | sim | ptd://HOST:PORT; repeatable (default: as `infergy run`).",
        ),
    ] = None,
    idle: Annotated[
        float,
        typer.Option(min=0, max=3600, metavar="SECONDS", help="Idle baseline before the command."),
    ] = 0.0,
    out: Annotated[
        Path | None, typer.Option(help="Also write result.json and the traces under OUT/RUN_ID/.")
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", metavar="FILE", help="Write the result JSON here.")
    ] = None,
    store: Annotated[bool, typer.Option(help="Keep the run in the results store.")] = True,
    config: ConfigOpt = None,
) -> int:
    """Run CMD and print the energy it used, per source (GPUs, wall, CPU), with its phases."""
    settings = load_settings(config)
    if command and command[0] == "--":
        command = command[1:]
    run_id = new_run_id()
    outcome = measure_command(
        command, run_id=run_id, settings=settings, meters=tuple(meter or ()), idle_s=idle
    )
    result = outcome.result
    if store:
        with open_store(settings) as st:
            st.save_run(result, outcome.traces, None)
    if out is not None:
        write_run_files(out, result, outcome.traces, None)
    if json_file is not None:
        try:
            json_file.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        except OSError as err:
            msg = f"--json {json_file}: cannot write: {err.strerror or err}"
            raise InputError(msg) from None
    render_measure(Console(stderr=True, highlight=False, soft_wrap=True), result, stored=store)
    return outcome.exit_code


def render_measure(console: Console, result: Mapping[str, Any], *, stored: bool) -> None:
    """The perf-stat-like report: the command, its energy per source, then each phase."""
    cmd = result.get("command") or {}
    argv = shlex.join(cmd.get("argv") or [])
    how = f"exit {cmd['exit_code']}" if cmd.get("exit_code") is not None else cmd.get("signal")
    status = str(result.get("status"))
    console.print()
    run = f"  run {result.get('run_id')}" if stored else ""
    style = _STATUS_STYLE.get(status, "")
    head = Text.assemble(
        " Energy of ", (argv, "bold"), f" ({how}):  ", (status, style), (run, "dim")
    )
    console.print(head)
    console.print(_table(result.get("power") or {}))
    for phase in result.get("phases") or []:
        console.print(
            Text.assemble(" phase ", (str(phase["name"]), "bold"), f"  {phase['duration_s']:.3f} s")
        )
        console.print(_table(phase["power"]))
    window = result.get("window") or {}
    console.print(f"  {window.get('duration_s', 0.0):>14.6f} seconds time elapsed")
    for p in result.get("problems") or []:
        console.print(Text(" • " + p, style="dim" if p.startswith("note:") else "yellow"))
    console.print()


def _table(power: Mapping[str, Mapping[str, Any]]) -> Table:
    t = Table(box=box.SIMPLE, show_edge=False, pad_edge=False, header_style="dim")
    t.add_column("source", min_width=10)
    for col in ("energy J", "± J", "mean W", "idle W", "cover"):
        t.add_column(col, justify="right")
    t.add_column("")
    for name, p in power.items():
        cov = p.get("coverage")
        t.add_row(
            name,
            _sig(p.get("energy_joules"), 6),
            _sig(p.get("uncertainty_joules"), 2),
            _num(p.get("average_watts"), ".2f"),
            _num(p.get("idle_watts"), ".2f"),
            Text(_num(cov, ".3f"), style="yellow" if cov is not None and cov < 0.95 else ""),
            Text("SIMULATED", style="bold magenta") if p.get("simulated") else "",
        )
    return t
