"""A session over a fake GPU: the counter read sparsely, densely at the window's edges, anchored.

The real NVML meter over a fake GPU (tests/fake_gpu.py: a known power profile, a counter that
updates every 50 ms) and the fake runner (queries every 10 ms): the session must ask for dense
counter reads from just before the measured run to just after its first query and after its
end, read sparsely in between, and report the GPU's energy from the anchored curve.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infergy.config.settings import Settings
from infergy.core.clock import SessionClock
from infergy.daemon.jobs import JobSpec
from infergy.daemon.meters import MeterSet
from infergy.daemon.session import Session
from infergy.meters.nvml import NvmlMeter, NvmlMeterConfig
from tests.fake_gpu import FakeGpu, SineProfile
from tests.fake_runner import FakeRunner

pytestmark = pytest.mark.integration

PERIOD_S = 0.05
SPARSE_S = 0.5
SPAN_S = 0.25
BURST_S = 0.012


class TimedGpu(FakeGpu):
    """Records when (time.monotonic) its energy counter was read."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.read_at: list[float] = []

    def energy_mj(self) -> int:
        self.read_at.append(time.monotonic())
        return super().energy_mj()


def scheduled(read_at: list[float], lo: float, hi: float) -> np.ndarray:
    """Scheduled reads in [lo, hi) (a re-sync's tight reads left out)."""
    t = np.asarray(read_at)
    gap = np.diff(t)
    alone = np.concatenate(([True], gap > BURST_S)) & np.concatenate((gap > BURST_S, [True]))
    return t[alone & (t >= lo) & (t < hi)]


def test_a_session_reads_the_counter_densely_at_the_edges_only_and_anchors_it(
    tmp_path: Path,
) -> None:
    settings = Settings.model_validate(
        {
            "output": {"dir": str(tmp_path / "out")},
            "meters": {
                "rapl": False,
                "nvml": {"counter_sparse_interval_s": SPARSE_S, "counter_dense_span_s": SPAN_S},
            },
            "session": {"tail_s": 1.0, "plots": False},
        }
    )
    gpu = TimedGpu(SineProfile(220.0, 90.0, 1.3), counter_period_s=PERIOD_S)
    config = NvmlMeterConfig(
        counter_sparse_interval_s=SPARSE_S,
        counter_dense_span_s=SPAN_S,
        calibration_pause_s=0.001,
        calibration_timeout_s=1.0,
        samples_read_interval_s=0.2,
    )

    async def meters(*_a: Any, **_kw: Any) -> MeterSet:
        clock = SessionClock()
        nvml = await asyncio.to_thread(NvmlMeter, [gpu], clock=clock, config=config)
        return MeterSet(clock, meters=[nvml])

    spec = JobSpec.model_validate(
        {"backend": "onnxruntime", "meter": ["nvml"], "duration": 3.0, "idle": 1.0, "warmup": 1.0}
    )
    session = Session("a1", spec, settings, meters=meters, runners=FakeRunner.open)
    outcome = asyncio.run(session.run())
    r = outcome.result
    assert session.meter_set is not None
    clock = session.meter_set.clock
    w = r["window"]
    start_ns, end_ns = w["start_unix_ns"], w["end_unix_ns"]

    def mono(t_ns: int) -> float:  # session clock -> time.monotonic()
        return (t_ns - clock.wall0_ns + clock.mono0_ns) / 1e9

    start, end = mono(start_ns), mono(end_ns)
    near_start = scheduled(gpu.read_at, start - 2 * PERIOD_S, start + SPAN_S)
    assert near_start.size >= (SPAN_S + 2 * PERIOD_S) / PERIOD_S - 2, near_start - start
    after = near_start[near_start >= start]
    assert after[0] - start <= 1.5 * PERIOD_S, "the window's start is not among dense reads"
    middle = scheduled(gpu.read_at, start + SPAN_S + PERIOD_S, end - PERIOD_S)
    span_s = end - start - SPAN_S - 2 * PERIOD_S
    assert middle.size <= span_s / SPARSE_S + 2, f"{middle.size} reads in {span_s:.1f} s"
    near_end = scheduled(gpu.read_at, end, end + SPAN_S + 0.1)
    assert near_end.size >= SPAN_S / PERIOD_S - 1, near_end - end

    p = r["power"]["gpu0"]
    assert p["anchoring"] is not None, r["problems"]
    truth = gpu.true_energy_j(clock, start_ns, end_ns)
    assert p["energy_joules"] == pytest.approx(truth, rel=2e-3)
    assert abs(p["energy_joules"] - truth) <= max(p["uncertainty_joules"], 1e-4 * truth)
    assert p["coverage"] == pytest.approx(1.0)
    assert p["anchoring"]["drifted"] is False
    assert r["power"]["gpu0.samples"]["counter_agreement"]["drifted"] is False
    assert r["status"] == "ok", r["problems"]
