"""A stand-in workload with the runners' API: queries at a fixed rate, no model, no LoadGen.

It exercises the session's lifecycle (phases, cancellation, persistence) without the cost of a
real LoadGen run; the integration tests of ``infergy run`` use the real runner.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from infergy.core.clock import SessionClock
from infergy.core.trace import QueryLog
from infergy.runners.types import Progress, RunOutcome, WorkloadConfig


class FakeRunner:
    """Issues one query every ``period_s``, each taking ``latency_s``, with ``batch`` samples."""

    period_s = 0.01
    latency_s = 0.005

    def __init__(
        self,
        cfg: WorkloadConfig,
        clock: SessionClock,
        out_dir: Path,
        on_in_flight: Callable[[int], None] | None,
    ) -> None:
        self.cfg, self.clock, self.out_dir = cfg, clock, out_dir
        self.on_in_flight = on_in_flight or (lambda n: None)
        self._issue: list[int] = []
        self._complete: list[int] = []
        self.closed = False

    @classmethod
    async def open(
        cls,
        cfg: WorkloadConfig,
        clock: SessionClock,
        out_dir: Path,
        on_in_flight: Callable[[int], None] | None = None,
    ) -> FakeRunner:
        return cls(cfg, clock, out_dir, on_in_flight)

    def describe(self) -> dict[str, Any]:
        return {"backend": "fake", "model": "none"}

    async def _load(
        self,
        duration_s: float,
        phase: str,
        on_progress: Callable[[Progress], None] | None,
        record: bool,
    ) -> None:
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < duration_s:
            issue = self.clock.now_ns()
            self.on_in_flight(self.cfg.batch_size)
            await asyncio.sleep(self.latency_s)
            done = self.clock.now_ns()
            self.on_in_flight(0)
            if record:
                self._issue.append(issue)
                self._complete.append(done)
            n += 1
            if on_progress is not None:
                on_progress(Progress(phase, n, n * self.cfg.batch_size, time.monotonic() - t0))
            await asyncio.sleep(max(0.0, self.period_s - self.latency_s))

    async def warmup(
        self, duration_s: float, on_progress: Callable[[Progress], None] | None = None
    ) -> None:
        await self._load(duration_s, "warmup", on_progress, record=False)

    def partial(self) -> QueryLog:
        n = min(len(self._issue), len(self._complete))
        return QueryLog(
            np.array(self._issue[:n], np.int64),
            np.array(self._complete[:n], np.int64),
            np.full(n, self.cfg.batch_size, np.int64),
        )

    async def run(self, on_progress: Callable[[Progress], None] | None = None) -> RunOutcome:
        (self.out_dir / "loadgen").mkdir(parents=True, exist_ok=True)
        await self._load(self.cfg.duration_s, "run", on_progress, record=True)
        q = self.partial()
        return RunOutcome(
            q, {"cpu": q}, self.out_dir / "loadgen", None, None, None, "VALID", {"fake": True}, []
        )

    async def aclose(self) -> None:
        self.closed = True
