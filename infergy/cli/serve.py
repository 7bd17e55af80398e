"""``infergy serve``: run the long-running service (see :mod:`infergy.daemon.service`)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from infergy.config.settings import load_settings
from infergy.daemon.service import Service

_EPILOG = (
    "Examples:\n\n"
    "  infergy serve --config /etc/infergy/infergy.toml     # as systemd runs it\n\n"
    "  infergy serve --listen 127.0.0.1:8765 --state-dir ./state\n\n"
    '  curl -s -XPOST localhost:8765/v1/runs -d \'{"scenario": "offline", "duration": 10}\'\n\n'
    "Signals: SIGTERM/SIGINT stop gracefully (the current job finishes or is aborted after "
    "[serve] stop_timeout_s); SIGHUP reloads the config for future sessions."
)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the command line."""
    app.command(name="serve", epilog=_EPILOG)(serve)


def serve(
    *,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="TOML config file (default: $INFERGY_CONFIG, else defaults)."
        ),
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option(metavar="HOST:PORT", help="HTTP API address (overrides \\[serve] listen)."),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="The service's state: the store and results (overrides \\[serve] state_dir)."
        ),
    ] = None,
) -> int:
    """Run the service: meters sampling all the time, a job queue, HTTP API, /metrics, MQTT."""
    overrides: dict[str, Any] = {}
    if listen is not None:
        overrides.setdefault("serve", {})["listen"] = listen
    if state_dir is not None:
        state_dir = state_dir.expanduser().absolute()  # as given, from where it was given
        overrides.setdefault("serve", {})["state_dir"] = str(state_dir)
        overrides.setdefault("store", {})["path"] = str(state_dir / "infergy.db")
        overrides.setdefault("output", {})["dir"] = str(state_dir / "runs")
    settings = load_settings(config, overrides=overrides or None)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",  # journald adds the time
    )
    service = Service(settings, config_path=config, overrides=overrides)
    asyncio.run(service.run())
    return 0
