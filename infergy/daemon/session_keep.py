"""Keeping a session's outcome: its files and plots, then the store; no lost write is silent.

Split from :mod:`infergy.daemon.session` (which calls :func:`keep_outcome` in a worker
thread). A write that fails becomes a problem in the result and a note for the observer, and
``result.json`` is rewritten to say so; a result the store refused is marked
:attr:`~infergy.daemon.session_types.SessionOutcome.unstored` (the service keeps and retries
it). :class:`LoggingObserver` is the service's observer: notes go to the log, a lost write as
a warning.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infergy.daemon.disk import disk_problem
from infergy.daemon.session_types import QuietObserver, SessionOutcome
from infergy.errors import InfergyError
from infergy.exporters.files import write_result_json, write_run_files

LOST_WRITES = (
    "could not write every file",
    "the result could not be stored",
    "a checkpoint failed",
)
"""How the notes (and result problems) about a write that failed begin."""


def keep_outcome(
    outcome: SessionOutcome,
    out_dir: Path,
    loadgen_dir: Path | None,
    *,
    store: Any,
    plots: bool,
    note: Callable[[str], None],
) -> None:
    """Write the run's files (and plots) under ``out_dir``, then store it (blocking)."""
    problems: list[str] = outcome.result["problems"]

    def lost(text: str) -> None:
        problems.append(text)
        note(text)

    try:
        outcome.files = write_run_files(
            out_dir.parent, outcome.result, outcome.traces, outcome.queries, loadgen_dir
        )
        if plots:
            from infergy.exporters.plots import draw_run_plots  # noqa: PLC0415

            outcome.files += draw_run_plots(
                out_dir, outcome.result, outcome.traces, outcome.queries
            )
    except InfergyError as err:
        disk = disk_problem(out_dir)
        lost(f"could not write every file: {err}" + (f"; {disk}" if disk else ""))
    if store is not None:
        try:
            store.save_run(outcome.result, outcome.traces, outcome.queries)
        except InfergyError as err:
            outcome.unstored = str(err)
            lost(f"the result could not be stored: {err}")
    if any(p.startswith(LOST_WRITES) for p in problems):
        with contextlib.suppress(InfergyError):  # result.json says what was lost, too
            write_result_json(out_dir.parent, outcome.result)


class LoggingObserver(QuietObserver):
    """A session observer for the service: notes go to ``logger``, with the run id.

    Phases and progress are in the job's state and the live metrics, not the log. A lost
    write is a warning: nothing the service fails to keep is silent.
    """

    def __init__(self, run_id: str, logger: logging.Logger) -> None:
        self.run_id = run_id
        self.logger = logger

    def note(self, text: str) -> None:
        """Log the note (WARNING for a lost write, else INFO)."""
        level = logging.WARNING if text.startswith(LOST_WRITES) else logging.INFO
        self.logger.log(level, "run %s: %s", self.run_id, text)
