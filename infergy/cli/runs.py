"""``infergy runs list | show | compare | export``: the runs kept in the results store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from infergy.cli.common import ConfigOpt, open_store
from infergy.cli.console import render_comparison, render_result, render_runs
from infergy.config.settings import load_settings
from infergy.core.compare import compare_results
from infergy.errors import InputError
from infergy.exporters.files import write_run_files
from infergy.store.summary import STORED_STATUSES

runs_app = typer.Typer(help="List, show and export the runs kept in the results store.")


@runs_app.command("list")
def runs_list(
    *,
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 20,
    status: Annotated[
        str | None,
        typer.Option(help=f"Only runs with this status: {', '.join(STORED_STATUSES)}."),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON array of run summaries (e.g. `| jq -r '.[].run_id'`).",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> int:
    """List stored runs, newest first, with the headline figures of the main power source."""
    if status is not None and status not in STORED_STATUSES:
        msg = f"--status {status!r} is no run status"
        raise InputError(msg, hint=f"use one of {', '.join(STORED_STATUSES)}")
    settings = load_settings(config)
    with open_store(settings) as st:
        rows = [r.as_dict() for r in st.list_runs(limit=limit, status=status)]
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
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
    with open_store(settings) as st:
        result = st.get_result(st.resolve(run_id))
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        render_result(Console(), result)
    return 0


@runs_app.command("compare")
def runs_compare(
    *,
    run_a: Annotated[str, typer.Argument(metavar="A", help="A run id or a unique prefix.")],
    run_b: Annotated[str, typer.Argument(metavar="B", help="Another run id or prefix.")],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the comparison as one JSON object.")
    ] = False,
    config: ConfigOpt = None,
) -> int:
    """Two stored runs side by side: figures, B - A with its uncertainty, settings that differ.

    A delta's uncertainty combines both runs' energy uncertainties as independent
    (root-sum-square); figures the results carry no uncertainty for show none.
    """
    settings = load_settings(config)
    with open_store(settings) as st:
        a, b = st.get_result(st.resolve(run_a)), st.get_result(st.resolve(run_b))
    comparison = compare_results(a, b)
    if json_out:
        typer.echo(json.dumps(comparison.as_dict(), indent=2))
    else:
        render_comparison(Console(), comparison, a, b)
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
    with open_store(settings) as st:
        rid = st.resolve(run_id)
        paths = write_run_files(
            out or settings.output.dir, st.get_result(rid), st.get_traces(rid), st.get_queries(rid)
        )
    for p in paths:
        typer.echo(str(p))
    return 0


def register(app: typer.Typer) -> None:
    """Add ``runs`` (and its subcommands) to the command line."""
    app.add_typer(runs_app, name="runs")
