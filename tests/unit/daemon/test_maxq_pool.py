"""The sweep's workload pool: each workload prepared once, bounded, reopened when closed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from infergy.core.clock import SessionClock
from infergy.daemon.maxq_pool import WorkloadPool
from infergy.runners.types import WorkloadConfig


class Opened:
    def __init__(self, cfg: WorkloadConfig, where: Path) -> None:
        self.cfg, self.where, self.closed, self.loadgen_dir = cfg, where, False, where

    async def aclose(self) -> None:
        self.closed = True


def test_workloads_are_opened_once_bounded_and_the_first_is_kept(tmp_path: Path) -> None:
    opened: list[Opened] = []

    async def opener(cfg: WorkloadConfig, clock: Any, where: Path, **_: Any) -> Opened:
        opened.append(Opened(cfg, where))
        return opened[-1]

    cfgs = [WorkloadConfig(backend="sim", batch_size=b) for b in (256, 1, 8, 64)]

    async def main() -> None:
        pool = WorkloadPool(tmp_path, opener, max_open=2)
        clock = SessionClock()
        lease = await pool.lease(cfgs[0], clock, tmp_path / "p1")
        assert opened[0].loadgen_dir == tmp_path / "p1" / "loadgen"  # the point's own folder
        await pool.lease(cfgs[0], clock, tmp_path / "p2")
        assert pool.opened == 1  # the same workload for both points
        await pool.lease(cfgs[1], clock, tmp_path / "p3")
        await pool.lease(cfgs[2], clock, tmp_path / "p4")  # evicts batch 1, never batch 256
        assert [o.closed for o in opened] == [False, True, False]
        await pool.lease(cfgs[0], clock, tmp_path / "p5")
        assert pool.opened == 3
        opened[0].closed = True  # a cancelled run ended it: opened again
        await pool.lease(cfgs[0], clock, tmp_path / "p6")
        assert pool.opened == 4
        await lease.aclose()  # a lease closes nothing
        assert not opened[3].closed
        await pool.aclose()
        assert all(o.closed for o in opened)

    asyncio.run(main())
