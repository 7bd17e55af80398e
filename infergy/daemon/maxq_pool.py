"""The prepared workloads of a sweep: one per batch size and precision, reused by every point.

A sweep's points differ in GPU settings far more often than in workload, and preparing a
model (loading it, building engines, compiling, capturing graphs) can take minutes: so each
distinct workload is opened once and leased to every point that runs it. The pool is the
session's runner factory (``runners=pool.lease``); a lease forwards the workload's calls,
points LoadGen's logs at the point's own folder, and does not close it (the pool does, at
the end). At most ``max_open`` stay open (the least recently used is closed first, except the
first one opened: the default settings' workload, measured again at the end); a workload a
cancelled run ended is opened again when needed.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from infergy.core.clock import SessionClock
from infergy.errors import InfergyError
from infergy.runners.types import Progress, RunOutcome, WorkloadConfig

Opener = Callable[..., Awaitable[Any]]


class Lease:
    """One point's use of a pooled workload (what a :class:`Session` calls ``runner``)."""

    def __init__(self, workload: Any, loadgen_dir: Path) -> None:
        self._workload = workload
        self.cfg: WorkloadConfig = workload.cfg
        if hasattr(workload, "loadgen_dir"):
            workload.loadgen_dir = loadgen_dir  # this point's logs in this point's folder

    async def warmup(
        self, duration_s: float, on_progress: Callable[[Progress], None] | None = None
    ) -> None:
        """The workload's warm-up (it calibrates LoadGen for this point's settings)."""
        await self._workload.warmup(duration_s, on_progress=on_progress)

    async def run(self, on_progress: Callable[[Progress], None] | None = None) -> RunOutcome:
        """The measured LoadGen run."""
        outcome: RunOutcome = await self._workload.run(on_progress=on_progress)
        return outcome

    async def simulate(self, settings_by_device: dict[str, Any]) -> int:
        """Hand the simulated boards' settings to a ``sim`` workload."""
        taken: int = await self._workload.simulate(settings_by_device)
        return taken

    def partial(self) -> Any:
        """The queries completed so far (an aborted point keeps them)."""
        return self._workload.partial()

    def describe(self) -> dict[str, Any]:
        """The workload's provenance."""
        described: dict[str, Any] = self._workload.describe()
        return described

    async def aclose(self) -> None:
        """Nothing: the pool owns the workload."""


class WorkloadPool:
    """Open workloads keyed by their config (see the module docstring).

    Args:
        directory: where the pooled workloads' own files go (``<key>/runner/``).
        opener: opens a workload (``infergy.runners.Workload.open``; tests inject fakes).
        max_open: workloads kept open at most.
    """

    def __init__(self, directory: Path, opener: Opener, *, max_open: int = 4) -> None:
        self._dir = directory
        self._opener = opener
        self._max_open = max(1, max_open)
        self._open: OrderedDict[WorkloadConfig, Any] = OrderedDict()
        self._pinned: WorkloadConfig | None = None
        self.opened = 0
        """How many times a workload was prepared (a sweep's cost beyond its points)."""
        self.prepare_s = 0.0
        """Seconds spent preparing them (model load, engine builds, compiles)."""

    async def lease(
        self,
        cfg: WorkloadConfig,
        clock: SessionClock,
        out_dir: Path,
        on_in_flight: Callable[[int], None] | None = None,
        on_activity: Callable[[float], None] | None = None,
    ) -> Lease:
        """A lease on the workload for ``cfg`` (opened now if it is not open).

        The callbacks are the first opening's: the sweep's meters, shared by every point.
        """
        workload = self._open.get(cfg)
        if workload is not None and getattr(workload, "closed", False):
            del self._open[cfg]
            workload = None
        if workload is None:
            while len(self._open) >= self._max_open:
                evict = next((k for k in self._open if k != self._pinned), None)
                if evict is None:
                    break
                oldest = self._open.pop(evict)
                with contextlib.suppress(InfergyError):
                    await oldest.aclose()
            where = self._dir / f"workload-{self.opened + 1:02d}"
            t0 = time.monotonic()
            extra = {"on_activity": on_activity} if on_activity is not None else {}
            workload = await self._opener(cfg, clock, where, on_in_flight=on_in_flight, **extra)
            self.prepare_s += time.monotonic() - t0
            self.opened += 1
            self._pinned = self._pinned or cfg
        self._open[cfg] = workload
        self._open.move_to_end(cfg)
        return Lease(workload, out_dir / "loadgen")

    async def aclose(self) -> None:
        """Close every open workload (idempotent)."""
        while self._open:
            _, workload = self._open.popitem()
            with contextlib.suppress(InfergyError):
                await workload.aclose()
