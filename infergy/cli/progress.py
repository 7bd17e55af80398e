"""The live display of ``infergy run``: one progress bar per phase, live watts and queries/s.

A :class:`~infergy.daemon.session.SessionObserver` on a rich console. On a terminal the bars
redraw in place; elsewhere (CI logs, pipes) each phase is one line, so logs stay readable.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Set
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from infergy.cli.console import SIMULATED_LABEL, print_note

_PHASES = {
    "prepare": "preparing (model, meters)",
    "idle": "idle baseline",
    "warmup": "warm-up",
    "run": "measured run",
    "tail": "tail",
    "analyze": "analysing",
}


class ConsoleObserver:
    """Phases as progress bars with live power; notes printed above them."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress = Progress(
            TextColumn("{task.description:<26}"),
            BarColumn(bar_width=28),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )
        self._lock = threading.Lock()
        self._task: TaskID | None = None
        self._duration_s: float | None = None
        self._phase = ""

    def __enter__(self) -> ConsoleObserver:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close_task()
        self._progress.stop()

    def _close_task(self) -> None:
        if self._task is not None:
            total = self._progress.tasks[self._task].total
            self._progress.update(self._task, completed=total or 1, total=total or 1)
            self._task = None

    def phase(self, name: str, duration_s: float | None) -> None:
        """Start a new bar (the previous one is completed)."""
        with self._lock:
            self._close_task()
            self._phase, self._duration_s = name, duration_s
            label = _PHASES.get(name, name)
            if not self.console.is_terminal:
                more = f" ({duration_s:g} s)" if duration_s else ""
                self.console.print(f"[bold]{label}[/bold]{more}")
            self._task = self._progress.add_task(label, total=duration_s or None, detail="")

    def progress(
        self,
        queries: int,
        samples: int,
        elapsed_s: float,
        watts: Mapping[str, float],
        simulated: Set[str] = frozenset(),
    ) -> None:
        """Refresh the current bar's detail: queries/s during load, watts (simulated marked)."""
        with self._lock:
            if self._task is None:
                return
            parts = []
            if self._phase in ("warmup", "run") and elapsed_s > 0 and queries:
                parts.append(f"{queries:,} q  {samples / elapsed_s:,.1f} samples/s")
            shown = sorted(watts.items())[:4]
            parts += [
                f"{name} {w:,.0f} W" + (f" {SIMULATED_LABEL}" if name in simulated else "")
                for name, w in shown
            ]
            if self._phase in ("warmup", "run"):
                self._progress.update(self._task, completed=elapsed_s, detail="  ".join(parts))
            else:
                self._progress.update(self._task, detail="  ".join(parts))
            if self._phase in ("idle", "tail"):
                self._progress.advance(self._task, 0.5)

    def note(self, text: str) -> None:
        """Print a note above the bars."""
        print_note(self.console, text)
