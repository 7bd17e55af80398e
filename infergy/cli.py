"""The ``infergy`` command line: the composition root for one-off commands.

Only :func:`main` turns errors into exit codes (ARCHITECTURE.md, "Command line"): 0 ok,
1 the measurement failed, 2 usage or config error, 3 result degraded and ``--strict`` given.
Errors are one line on stderr plus a hint; ``--debug`` anywhere on the line shows tracebacks.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from infergy import __version__
from infergy.config.settings import Settings, load_settings
from infergy.console import render_result, render_runs
from infergy.doctor import register as register_doctor
from infergy.errors import InfergyError, InputError
from infergy.exporters.files import write_run_files
from infergy.ptd_bridge.commands import register as register_ptd
from infergy.recordings import AnalyzeRequest, analyze_recordings
from infergy.run_command import register as register_run
from infergy.serve_command import register as register_serve
from infergy.store.db import Store

EXIT_DEGRADED = 3

app = typer.Typer(
    name="infergy",
    help=(
        "Power-aware inference measurement: joules per query and samples/s per watt, "
        "with MLPerf's power rules reproduced beside time-weighted figures."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
runs_app = typer.Typer(help="List, show and export the runs kept in the results store.")
app.add_typer(runs_app, name="runs")
register_run(app)
register_serve(app)
register_doctor(app)
register_ptd(app)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TOML config file (default: $INFERGY_CONFIG, else built-in defaults)."
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"infergy {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks (may also be given after the command).")
    ] = False,
) -> None:
    """infergy: measure what inference costs in joules."""
    del version, debug  # handled eagerly / in main()


@app.command(
    epilog=(
        "Examples:\n\n"
        "  infergy analyze --power ac=run_1/spl.txt --loadgen-log run_1/\n\n"
        "  infergy analyze --power gpu0=gpu0.csv --power ac=ptd.log "
        "--queries queries.csv --align auto --json"
    )
)
def analyze(
    *,
    power: Annotated[
        list[str],
        typer.Option(
            "--power",
            metavar="SOURCE=PATH",
            help=(
                "A power source: a PTD log (-l log, spl.txt, RL dump) or a CSV trace "
                "(t_ns,watts_instant | t_ns,watts_mean | t_ns,joules). SOURCE names the kind: "
                "gpu0.. (NVML), ac/ac1.. (analyzer), cpu (RAPL), sim. Repeatable."
            ),
        ),
    ],
    queries: Annotated[
        Path | None,
        typer.Option(
            help="Query log CSV (issue_ns,complete_ns,samples): enables per-query energy."
        ),
    ] = None,
    loadgen_log: Annotated[
        Path | None,
        typer.Option(help="LoadGen's mlperf_log_detail.txt, or the folder holding it."),
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option(help="offline | server | single-stream | multi-stream (default: LoadGen's)."),
    ] = None,
    idle_watts: Annotated[
        list[str] | None,
        typer.Option("--idle-watts", metavar="SOURCE=W", help="Idle baseline of a source."),
    ] = None,
    idle_before: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Idle baseline of every source from the SECONDS that end 1 s before the window.",
        ),
    ] = None,
    clock_offset_ms: Annotated[
        list[str] | None,
        typer.Option(
            "--clock-offset-ms",
            metavar="SOURCE=MS",
            help="Known offset of a source's clock: + when it runs ahead of this host.",
        ),
    ] = None,
    align: Annotated[
        str | None,
        typer.Option(
            metavar="auto",
            help="auto: estimate every non-NVML source's offset against the GPU sum.",
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the schema-1 result JSON on stdout.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Also write result.json, traces, queries and an MLPerf-style layout."),
    ] = None,
    store: Annotated[
        bool, typer.Option("--store/--no-store", help="Keep the result in the results store.")
    ] = True,
    strict: Annotated[bool, typer.Option(help="Exit 3 when the result is degraded.")] = False,
    config: ConfigOpt = None,
) -> int:
    """Analyze recorded power traces against a measured run's window and queries."""
    if align not in (None, "auto"):
        msg = f"--align takes only 'auto', got {align!r}"
        raise InputError(msg, hint="use --clock-offset-ms SOURCE=MS for a known offset")
    settings = load_settings(config)
    request = AnalyzeRequest(
        power=power,
        queries=queries,
        loadgen_log=loadgen_log,
        scenario=scenario,
        idle_watts=idle_watts or [],
        clock_offset_ms=clock_offset_ms or [],
        align_auto=align == "auto",
        idle_before_s=idle_before,
    )
    analysis = analyze_recordings(request, settings)
    result = analysis.result
    paths: list[Path] = []
    if store:
        with Store.open(_store_path(settings)) as st:
            st.save_run(result, analysis.traces, analysis.queries)
    if out is not None:
        paths = write_run_files(
            out, result, analysis.traces, analysis.queries, loadgen_dir=analysis.loadgen_dir
        )
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        console = Console()
        render_result(console, result)
        if paths:
            console.print(f"[dim]wrote {len(paths)} files under {paths[0].parent}[/dim]")
    return EXIT_DEGRADED if strict and result["status"] != "ok" else 0


def _store_path(settings: Settings) -> Path:
    return settings.store.path_or_default(os.environ)


@runs_app.command("list")
def runs_list(
    *,
    limit: Annotated[int, typer.Option(help="How many runs, newest first.")] = 20,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="JSON lines instead of a table.")
    ] = False,
    config: ConfigOpt = None,
) -> int:
    """List stored runs, newest first."""
    settings = load_settings(config)
    with Store.open(_store_path(settings)) as st:
        rows = [r.as_dict() for r in st.list_runs(limit=limit, status=status)]
    if json_out:
        for r in rows:
            typer.echo(json.dumps(r))
    else:
        render_runs(Console(), rows)
    return 0


@runs_app.command("show")
def runs_show(
    *,
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the result JSON.")] = False,
    config: ConfigOpt = None,
) -> int:
    """Show one stored run."""
    settings = load_settings(config)
    with Store.open(_store_path(settings)) as st:
        result = st.get_result(st.resolve(run_id))
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        render_result(Console(), result)
    return 0


@runs_app.command("export")
def runs_export(
    *,
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Folder to write the run's files under (default: \\[output] dir)."),
    ] = None,
    config: ConfigOpt = None,
) -> int:
    """Write a stored run's result JSON, traces and query log as files."""
    settings = load_settings(config)
    with Store.open(_store_path(settings)) as st:
        rid = st.resolve(run_id)
        paths = write_run_files(
            out or settings.output.dir, st.get_result(rid), st.get_traces(rid), st.get_queries(rid)
        )
    for p in paths:
        typer.echo(str(p))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``infergy`` console script; the only place that exits."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:  # accepted anywhere on the line: move it where the root callback expects it
        args = ["--debug", *[a for a in args if a != "--debug"]]
    err = Console(stderr=True, highlight=False)
    try:
        rv: Any = app(args=args, prog_name="infergy", standalone_mode=False)
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        err.print("aborted")
        return 130
    except typer.TyperException as e:  # usage errors: typer prints them with the usage line
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"[bold red]error:[/bold red] {e.format_message()}")
        return int(e.exit_code)
    except InfergyError as e:
        if debug:
            raise
        err.print(f"[bold red]error:[/bold red] {e}")
        if e.hint:
            err.print(f"[dim]hint:[/dim] {e.hint}")
        return e.exit_code
    except Exception as e:
        if debug:
            raise
        err.print(f"[bold red]internal error:[/bold red] {type(e).__name__}: {e}")
        err.print("[dim]hint:[/dim] rerun with --debug and report the traceback")
        return 1
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
