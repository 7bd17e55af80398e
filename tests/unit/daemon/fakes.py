"""Test doubles for the service's job queue: a session that waits on a gate and records its fate."""

from __future__ import annotations

import asyncio
from typing import Any

from infergy.daemon.jobs import JobSpec
from infergy.errors import MeasurementFailedError


class FakeSessions:
    """``run_session`` that blocks until released, then returns a result with ``status``.

    ``started`` lists run ids in start order; ``cancelled`` those whose task was cancelled;
    ``running`` those inside the session right now (to check the overlap rule).
    """

    def __init__(self, *, auto: bool = False, status: str = "ok") -> None:
        self.auto = auto
        self.status = status
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.running: set[str] = set()
        self.max_parallel = 0
        self.gates: dict[str, asyncio.Event] = {}
        self.fail: dict[str, BaseException] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()

    async def __call__(self, run_id: str, spec: JobSpec) -> dict[str, Any]:
        gate = self.gates.setdefault(run_id, asyncio.Event())
        self.started.append(run_id)
        self.running.add(run_id)
        self.max_parallel = max(self.max_parallel, len(self.running))
        self.changed.set()
        try:
            if not self.auto:
                await gate.wait()
            await asyncio.sleep(0)
            if run_id in self.fail:
                raise self.fail[run_id]
            return self.results.get(run_id) or {
                "schema_version": 1,
                "run_id": run_id,
                "status": self.status,
                "problems": ["coverage 0.9"] if self.status != "ok" else [],
                "scenario": spec.scenario,
                "performance": {"samples_per_second": 100.0},
                "efficiency": {
                    "gpus": {"samples_per_second_per_watt": 2.0, "joules_per_query": 0.5}
                },
            }
        except asyncio.CancelledError:
            self.cancelled.append(run_id)
            raise
        finally:
            self.running.discard(run_id)
            self.changed.set()

    def release(self, run_id: str) -> None:
        self.gates.setdefault(run_id, asyncio.Event()).set()

    async def wait_started(self, n: int, timeout_s: float = 2.0) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.started) < n:
                self.changed.clear()
                await self.changed.wait()


async def settle() -> None:
    """Let the scheduler's tasks run until nothing is ready."""
    for _ in range(20):
        await asyncio.sleep(0)


FAILURE = MeasurementFailedError("the meter went away", hint="check the analyzer cable")
