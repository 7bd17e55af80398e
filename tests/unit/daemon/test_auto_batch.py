"""``--batch-size auto``: the knee rule over a batch sweep, the cache and its key."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from infergy.config.settings import Settings
from infergy.daemon.auto_batch import cache_key, knee_of, read_cache, resolve_auto_batch
from infergy.daemon.jobs import JobSpec
from infergy.daemon.maxq_points import PointEntry
from infergy.maxq.errors import NoFeasiblePointError
from infergy.maxq.plan import SweepPoint
from infergy.maxq.points import MeasuredPoint


class Record:
    def __init__(self, efficiency: dict[int, float], *, simulated: bool = True) -> None:
        self.simulated = simulated
        self.entries = [
            PointEntry(i, "point", f"r{i}", {}, "ok",
                       measured=MeasuredPoint(SweepPoint(batch_size=b), 100.0 * e, 0.0, 100.0, 0.0))
            for i, (b, e) in enumerate(efficiency.items())
        ]  # fmt: skip


def settings(tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {
            "maxq": {"state_dir": str(tmp_path)},
            "meters": {"simulated_gpus": 1, "simulated_part": "h200"},
        }
    )


def test_the_knee_is_the_smallest_batch_within_the_margin_of_the_best() -> None:
    knee, eff = knee_of(Record({1: 9.6, 16: 22.7, 32: 23.9, 64: 24.4, 256: 24.8}), 0.03)
    assert knee == 64 and eff[256] == pytest.approx(24.8)
    with pytest.raises(NoFeasiblePointError, match="no batch size gave a usable measurement"):
        knee_of(Record({}), 0.03)


def test_it_is_measured_once_then_read_from_the_cache(tmp_path: Path) -> None:
    s = settings(tmp_path)
    job = JobSpec(backend="sim", precision="fp16", batch_size="auto")
    sweeps: list[Any] = []

    async def run_sweep(sweep_id: str, spec: Any) -> Record:
        sweeps.append(spec)
        return Record({8: 20.0, 32: 24.0, 128: 24.5})

    async def resolve() -> Any:
        return await resolve_auto_batch(job, s, env={}, sweep_id="mq-a", run_sweep=run_sweep)

    first = asyncio.run(resolve())
    assert (first.batch_size, first.cached, first.simulated) == (32, False, True)
    spec = sweeps[0]
    assert spec.scenario == "offline" and spec.batch_sizes == "1,2,4,8,16,32,64,128,256"
    assert not spec.changes_settings  # read-only: the knee never changes a setting
    second = asyncio.run(resolve())
    assert (second.batch_size, second.cached) == (32, True) and len(sweeps) == 1
    key = cache_key(job, "simulated-h200")
    assert key == "sim|auto|fp16|simulated-h200" and read_cache(tmp_path)[key]["batch_size"] == 32
    other = job.model_copy(update={"precision": "fp32"})  # another key: measured again
    asyncio.run(resolve_auto_batch(other, s, env={}, sweep_id="mq-b", run_sweep=run_sweep))
    assert len(sweeps) == 2 and "SIMULATED" in first.describe()
