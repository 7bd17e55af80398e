"""The simulated GPU behind the real NVML meter: energy follows the activity exactly."""

from __future__ import annotations

import asyncio

import pytest

from infergy.core.clock import SessionClock
from infergy.core.energy import window_energy
from infergy.core.trace import Window
from infergy.meters.gpu_sim import SimulatedGpu
from infergy.meters.nvml import NvmlMeter


def test_the_nvml_meter_over_simulated_gpus_integrates_the_activity() -> None:
    gpus = [SimulatedGpu(0, idle_w=100.0, busy_w=500.0), SimulatedGpu(1)]
    clock = SessionClock()
    meter = NvmlMeter(gpus, clock=clock)
    marks: dict[str, int] = {}

    async def main() -> None:
        task = asyncio.create_task(meter.run())
        await asyncio.sleep(0.6)
        marks["a"] = clock.now_ns()
        await asyncio.sleep(1.0)  # idle: 100 W
        gpus[0].set_activity(1.0)
        await asyncio.sleep(1.0)  # busy: 500 W
        gpus[0].set_activity(0.5)
        await asyncio.sleep(1.0)  # half: 300 W
        marks["b"] = clock.now_ns()
        await asyncio.sleep(0.6)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        meter.close()
    w = Window(marks["a"], marks["b"])
    truth = 100 + 500 + 300  # J, within the edge timing
    for source in ("gpu0", "gpu0.samples"):
        e = window_energy(meter.snapshot(source), w)
        assert e.energy_j == pytest.approx(truth, rel=0.03), source
    assert meter.gpus["gpu1"].name == "Simulated GPU (SIMULATED)"
    assert all(info.simulated for info in meter.describe())
    ctx = meter.context("gpu0")
    assert ctx is not None and ctx.power_limit_w == 700.0
