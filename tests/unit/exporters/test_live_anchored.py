"""Live power of a sparsely read energy counter, anchored to its 20-ms samples.

Against analytic truth: the counter read every ~1 s would show the power of the last read
interval (late by up to a second); its samples alone are off by their sensor's gain. The
anchored live power is the true mean power of the newest second, and the energy total stays
the raw counter's.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from infergy.core.clock import SessionClock
from infergy.core.trace import Semantics
from infergy.exporters.live_power import AnchoredLivePower, LiveSource
from infergy.exporters.telemetry import LiveTelemetry
from infergy.meters.gpu import PowerSamples
from infergy.meters.nvml import NvmlMeter, NvmlMeterConfig
from tests.fake_gpu import FakeGpu, SineProfile
from tests.synth import Bursty
from tests.unit.core.anchored_truth import (
    H_NS,
    S,
    counter_trace,
    read_times_ns,
    samples_trace,
    to_ns,
    truth_j,
)


def test_anchored_live_power_is_the_true_mean_of_the_newest_second_at_the_counters_scale():
    rng = np.random.default_rng(2)
    # 100 W, then 600 W from 30.4 s: the newest second straddles the step, past the last read
    sig = Bursty(np.array([0.0, 30.4, 61.0]), np.array([100.0, 600.0]), 61.0)
    reads = read_times_ns(rng)
    counter = counter_trace(sig.energy, reads)
    samples = samples_trace(sig.power, rng, gain=0.97, noise=0.005)
    now = int(to_ns(30.9))
    last_read = reads[reads <= now][-1]
    assert now - last_read > S // 10, "the newest second must reach past the last read"
    live = AnchoredLivePower(S // 10, Semantics.INSTANT, H_NS, window_s=1.0)
    rate = LiveSource(Semantics.COUNTER, S // 10, window_s=1.0)
    for lo, hi in ((0.0, 20.0), (20.0, 30.9)):  # two polls
        c = (counter.t_ns >= to_ns(lo)) & (counter.t_ns < to_ns(hi))
        s = (samples.t_ns >= to_ns(lo)) & (samples.t_ns <= to_ns(hi))
        live.add_counter(counter.t_ns[c], counter.values[c])
        live.add_samples(samples.t_ns[s], samples.values[s])
        rate.add(counter.t_ns[c], counter.values[c])
    end = samples.t_ns[samples.t_ns <= now][-1]
    truth_w = truth_j(sig.energy, end - S, end)
    got = live.power_w()
    assert got is not None
    assert got == pytest.approx(truth_w, rel=0.02), (got, truth_w)
    plain = rate.power_w()
    assert plain is not None and abs(plain - truth_w) > 0.2 * truth_w, "the test has no lag"


def test_without_fresh_samples_there_is_no_anchored_power():
    live = AnchoredLivePower(S // 10, Semantics.INSTANT, H_NS, window_s=1.0)
    t = np.arange(0, 10, dtype=np.int64) * S
    live.add_counter(t, 200.0 * np.arange(10.0))
    assert live.power_w() is None  # no samples at all
    ts = np.arange(0, 200, dtype=np.int64) * H_NS  # samples stop at 4 s, the counter goes on
    live.add_samples(ts, np.full(ts.size, 200.0))
    assert live.power_w() is None


class BiasedGpu(FakeGpu):
    """A fake GPU whose power sensor reads 3 % low (the counter is right)."""

    def power_samples(self, since_wall_us: int) -> PowerSamples:
        s = super().power_samples(since_wall_us)
        return PowerSamples(s.t_wall_us, s.power_mw * 0.97)


def test_live_telemetry_shows_the_anchored_power_and_the_raw_counters_energy():
    gpu = BiasedGpu(SineProfile(220.0, 90.0, 1.7), counter_period_s=0.05)
    config = NvmlMeterConfig(
        counter_sparse_interval_s=0.5,
        calibration_pause_s=0.001,
        calibration_timeout_s=1.0,
        samples_read_interval_s=0.2,
    )
    clock = SessionClock()
    meter = NvmlMeter([gpu], clock=clock, config=config)
    telemetry = LiveTelemetry([meter], clock=clock, window_s=1.0)

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(meter.run(), name="meter[nvml]")
            for _ in range(8):
                await asyncio.sleep(0.4)
                await asyncio.to_thread(telemetry.poll)
            task.cancel()

    t0 = time.monotonic()
    try:
        asyncio.run(main())
    finally:
        meter.close()
    assert time.monotonic() - t0 < 10
    by_name = {s.meter_source: s for s in telemetry.telemetry().sources}
    samples = meter.snapshot("gpu0.samples")
    end = int(samples.t_ns[-1])
    truth_w = gpu.true_energy_j(clock, end - S, end)
    counter_w = by_name["gpu0"].power_w
    assert counter_w == pytest.approx(truth_w, rel=0.02), (counter_w, truth_w)
    samples_w = by_name["gpu0.samples"].power_w
    assert samples_w == pytest.approx(0.97 * truth_w, rel=0.03)  # the sensor's own figure
    counter = meter.snapshot("gpu0")
    raw_j = float(counter.values[-1] - counter.values[0])
    assert by_name["gpu0"].energy_j == pytest.approx(raw_j, abs=1e-9), "not the raw counter"
