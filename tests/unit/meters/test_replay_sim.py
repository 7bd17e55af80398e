"""Replay (recordings played back on the session clock) and the simulated meter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from infergy.core.clock import SessionClock
from infergy.core.energy import window_energy
from infergy.core.trace import Semantics, Trace, Window
from infergy.errors import ConfigError, InputError, MeterError
from infergy.meters.base import Meter
from infergy.meters.replay import ReplayMeter
from infergy.meters.sim import PowerModel, SimMeter

ROOT = Path(__file__).resolve().parents[3]
EX = ROOT / "examples" / "single-stream"


def run_until_done(meter: Meter, timeout_s: float, actions: Sequence[tuple[float, Callable]] = ()):
    async def main() -> None:
        task = asyncio.create_task(meter.run())
        t0 = time.monotonic()
        for at_s, act in actions:
            await asyncio.sleep(max(0.0, t0 + at_s - time.monotonic()))
            act()
        done, _ = await asyncio.wait({task}, timeout=max(0.0, t0 + timeout_s - time.monotonic()))
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_replay_of_a_csv_at_20x_is_restamped_and_time_compressed():
    clock = SessionClock()
    meter = ReplayMeter(EX / "gpu1_power.csv", clock=clock, source="gpu1", speed=20.0)
    recorded = meter.recording.trace
    assert isinstance(meter, Meter)
    (info,) = meter.describe()
    assert info.kind == "replay" and info.simulated and info.semantics is Semantics.INSTANT
    assert info.nominal_period_ns == recorded.nominal_period_ns // 20
    span_s = (recorded.t_ns[-1] - recorded.t_ns[0]) / 1e9
    start = clock.now_ns()
    t0 = time.monotonic()
    run_until_done(meter, timeout_s=span_s / 20 + 2.0)
    took_s = time.monotonic() - t0
    assert meter.finished and not meter.health()["gpu1"].up
    assert span_s / 20 - 0.05 < took_s < span_s / 20 + 0.5  # played at 20x, not at once
    played = meter.snapshot("gpu1")
    assert len(played) == len(recorded)
    np.testing.assert_array_equal(played.values, recorded.values)
    assert start <= played.t_ns[0] <= start + 50_000_000  # re-stamped onto the session clock
    np.testing.assert_allclose(
        np.diff(played.t_ns), np.diff(recorded.t_ns) / 20, atol=1
    )  # spacing compressed 20-fold
    whole = Window(int(played.t_ns[0]), int(played.t_ns[-1]))
    rec_whole = Window(int(recorded.t_ns[0]), int(recorded.t_ns[-1]))
    ratio = window_energy(played, whole).energy_j / window_energy(recorded, rec_whole).energy_j
    assert ratio == pytest.approx(1 / 20, rel=1e-6)  # a power trace's energy scales by 1/speed


def test_replay_of_a_ptd_log_and_of_a_counter():
    clock = SessionClock()
    ptd = ReplayMeter(EX / "ptd_log.txt", clock=clock, source="ac", speed=50.0)
    assert ptd.describe()[0].details["format"] == "ptd"
    assert ptd.describe()[0].semantics is Semantics.INTERVAL_MEAN
    counter = ReplayMeter(EX / "gpu0_energy.csv", clock=clock, source="gpu0", speed=100.0)
    rec = counter.recording.trace
    run_until_done(counter, timeout_s=5.0)
    played = counter.snapshot("gpu0")
    assert played.values[-1] - played.values[0] == pytest.approx(rec.values[-1] - rec.values[0])
    with pytest.raises(MeterError, match="no source 'x'"):
        counter.snapshot("x")


def test_replay_rejects_bad_input(tmp_path):
    with pytest.raises(InputError, match="speed"):
        ReplayMeter(EX / "gpu1_power.csv", clock=SessionClock(), speed=0)
    with pytest.raises(InputError, match="cannot read"):
        ReplayMeter(tmp_path / "missing.csv", clock=SessionClock())
    empty = Trace(np.zeros(0, np.int64), np.zeros(0), Semantics.INSTANT, 1)
    with pytest.raises(InputError, match="nothing to replay"):
        ReplayMeter(empty, clock=SessionClock())


def test_sim_is_labelled_simulated_everywhere():
    meter = SimMeter(clock=SessionClock())
    assert isinstance(meter, Meter)
    (info,) = meter.describe()
    assert info.name == "sim" and info.kind == "sim" and info.simulated
    assert info.details["simulated"] == "true" and "simulated" in info.device
    with pytest.raises(ConfigError):
        PowerModel(idle_w=100, busy_w=50)


def test_sim_power_follows_the_activity_the_runner_sets():
    clock = SessionClock()
    model = PowerModel(idle_w=50.0, busy_w=250.0, period_s=0.02)
    meter = SimMeter(clock=clock, model=model)
    start = clock.now_ns()
    run_until_done(
        meter,
        timeout_s=1.2,
        actions=[
            (0.3, lambda: meter.set_activity(1.0)),
            (0.6, lambda: meter.set_in_flight(1, saturation=4)),
            (0.9, lambda: meter.set_activity(0.0)),
        ],
    )
    busy_s = meter.activity_s()
    trace = meter.snapshot("sim")
    assert busy_s == pytest.approx(0.3 + 0.3 / 4, abs=0.02)
    assert trace.values.min() == pytest.approx(50.0) and trace.values.max() == pytest.approx(250.0)
    # without noise the energy is exactly idle * T + (busy - idle) * activity-seconds
    covered = Window(int(trace.t_ns[0]) - trace.nominal_period_ns, int(trace.t_ns[-1]))
    got = window_energy(trace, covered)
    expected = 50.0 * covered.duration_s + 200.0 * busy_s
    assert got.coverage == pytest.approx(1.0) and got.energy_j == pytest.approx(expected, abs=2.0)
    assert start <= trace.t_ns[0]


def test_sim_noise_is_reproducible_by_seed():
    model = PowerModel(idle_w=100.0, busy_w=100.0, noise_frac=0.05, period_s=0.01)
    values = []
    for _ in range(2):
        meter = SimMeter(clock=SessionClock(), model=model, seed=3)
        run_until_done(meter, timeout_s=0.2)
        values.append(meter.snapshot("sim").values[:10])
    np.testing.assert_array_equal(values[0], values[1])
    assert 0.0 < float(np.std(values[0])) < 20.0
