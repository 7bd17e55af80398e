"""``infergy plot``: redraw a stored run's plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from infergy.cli.common import ConfigOpt, open_store
from infergy.config.settings import load_settings
from infergy.exporters.plots import draw_run_plots


def plot(
    *,
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")],
    out: Annotated[
        Path | None, typer.Option(help="Folder for the PNGs (default: \\[output] dir/<run id>).")
    ] = None,
    config: ConfigOpt = None,
) -> int:
    """Redraw a stored run's plots (power over time, per-query energy, latency)."""
    settings = load_settings(config)
    with open_store(settings) as st:
        rid = st.resolve(run_id)
        result, traces, queries = st.get_result(rid), st.get_traces(rid), st.get_queries(rid)
    paths = draw_run_plots(out or settings.output.dir / rid, result, traces, queries)
    for p in paths:
        typer.echo(str(p))
    return 0


def register(app: typer.Typer) -> None:
    """Add ``plot`` to the command line."""
    app.command(name="plot")(plot)
