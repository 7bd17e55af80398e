"""What every command shares: the ``--config`` option, the degraded exit code, the store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from infergy.config.settings import Settings
from infergy.store.db import Store

EXIT_DEGRADED = 3
"""``--strict`` and a degraded result (ARCHITECTURE.md, "Command line")."""

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TOML config file (default: $INFERGY_CONFIG, else built-in defaults)."
    ),
]


@contextmanager
def open_store(settings: Settings) -> Iterator[Store]:
    """The results store the settings name (``[store] path``, else the default location)."""
    with Store.open(settings.store.path_or_default(os.environ)) as store:
        yield store
