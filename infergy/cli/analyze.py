"""``infergy analyze``: recorded power traces against a measured run's window and queries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from infergy.cli.common import EXIT_DEGRADED, ConfigOpt, open_store
from infergy.cli.console import print_note, render_result
from infergy.config.settings import load_settings
from infergy.daemon.recordings import AnalyzeRequest, analyze_recordings
from infergy.errors import InputError
from infergy.exporters.files import write_run_files

_EPILOG = (
    "Examples:\n\n"
    "  infergy analyze --power ac=run_1/spl.txt --loadgen-log run_1/\n\n"
    "  infergy analyze --power gpu0=gpu0.csv --power ac=ptd.log "
    "--queries queries.csv --align auto --json"
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
            help=(
                "Query log CSV (issue_ns,complete_ns,samples), plain or gzip'd like a run's "
                "queries.csv.gz: enables per-query energy."
            )
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
        with open_store(settings) as st:
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
            where = f"{len(paths)} files under {paths[0].parent}"
            print_note(console, where, label="wrote", style="dim")
    return EXIT_DEGRADED if strict and result["status"] != "ok" else 0


def register(app: typer.Typer) -> None:
    """Add ``analyze`` to the command line."""
    app.command(name="analyze", epilog=_EPILOG)(analyze)
