"""The session's value types: its observer Protocol, its outcome, its working state.

Split from :mod:`infergy.daemon.session` (which re-exports them) to keep the lifecycle readable.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from infergy.core.clock import SessionClock
from infergy.core.trace import QueryLog, Trace, Window
from infergy.errors import InfergyError
from infergy.runners.types import Progress, RunOutcome

EXIT_OK, EXIT_FAILED, EXIT_DEGRADED = 0, 1, 3


class SessionObserver(Protocol):
    """What a session tells the outside world while it runs (console, service, tests)."""

    def phase(self, name: str, duration_s: float | None) -> None:
        """A phase starts (``prepare``, ``idle``, ``warmup``, ``run``, ``tail``, ``analyze``)."""

    def progress(
        self,
        queries: int,
        samples: int,
        elapsed_s: float,
        watts: Mapping[str, float],
        simulated: Set[str] = frozenset(),
    ) -> None:
        """Live figures, about twice a second (``simulated``: the sources not measured)."""

    def note(self, text: str) -> None:
        """Something the user should know (a meter skipped, a fallback taken)."""


class QuietObserver:
    """An observer that ignores everything."""

    def phase(self, name: str, duration_s: float | None) -> None:
        """Ignored."""

    def progress(
        self,
        queries: int,
        samples: int,
        elapsed_s: float,
        watts: Mapping[str, float],
        simulated: Set[str] = frozenset(),
    ) -> None:
        """Ignored."""

    def note(self, text: str) -> None:
        """Ignored."""


@dataclass
class SessionOutcome:
    """What a session produced (also when it was aborted)."""

    result: dict[str, Any]
    traces: dict[str, Trace] = field(default_factory=dict)
    queries: QueryLog | None = None
    files: list[Path] = field(default_factory=list)
    unstored: str | None = None
    """Why the store refused the result (``None``: stored, or no store)."""

    @property
    def status(self) -> str:
        """``ok``, ``degraded``, ``failed`` or ``aborted``."""
        return str(self.result["status"])

    def exit_code(self, *, strict: bool) -> int:
        """The command-line exit code (ARCHITECTURE.md: 0, 1 failed/aborted, 3 degraded+strict)."""
        if self.status in ("failed", "aborted"):
            return EXIT_FAILED
        return EXIT_DEGRADED if strict and self.status != "ok" else EXIT_OK


@dataclass
class _State:
    """What the session knows so far (read by the abort path)."""

    clock: SessionClock
    started_ns: int
    phase: str = "prepare"
    idle: Window | None = None
    outcome: RunOutcome | None = None
    run_started_ns: int | None = None
    notes: list[str] = field(default_factory=list)
    gpus_start: list[dict[str, Any]] = field(default_factory=list)
    progress: Progress | None = None
    settled: bool = False
    """The final result is being made: no more checkpoints."""


@contextlib.asynccontextmanager
async def unwrapped(ignore: tuple[type[BaseException], ...] = ()) -> AsyncIterator[None]:
    """Re-raise a TaskGroup's error as itself: callers expect ``InfergyError``, not a group.

    The first ``InfergyError`` among the group's leaves wins, else the first leaf; leaves of
    the ``ignore`` types are dropped, and a group of nothing else ends quietly.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        errors = [e for e in _leaves(group) if not isinstance(e, ignore)]
        if errors:
            first = next((e for e in errors if isinstance(e, InfergyError)), errors[0])
            raise first from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for e in group.exceptions:
        if isinstance(e, BaseExceptionGroup):
            yield from _leaves(e)
        else:
            yield e
