"""Modelled simulated boards: the NVML device reports the model's power, clocks and limit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from infergy.core.gpu_model import H200, T4, ModelSettings, idle_state, steady_state
from infergy.errors import ConfigError
from infergy.meters.gpu_sim import SimulatedGpu
from infergy.meters.sim_board import (
    SimulatedBoard,
    board_uuid,
    parse_board_uuid,
    simulated_part,
)


def test_the_uuid_names_part_and_index_and_parses_back() -> None:
    assert board_uuid("h200", 3) == "GPU-simulated-h200-0003"
    assert parse_board_uuid("GPU-simulated-h200-0003") == (H200, 3)
    assert parse_board_uuid("GPU-simulated-0003") is None  # a generic board: no model
    assert parse_board_uuid("GPU-3f2a-real") is None
    with pytest.raises(ConfigError, match="unknown simulated GPU part 'v100'") as err:
        simulated_part("v100")
    assert err.value.hint is not None and "t4" in err.value.hint


def test_busy_and_idle_power_are_the_models_at_the_boards_settings_and_load() -> None:
    board = SimulatedBoard(H200)
    gpu = SimulatedGpu(0, board=board)
    assert gpu.identity.uuid == board.uuid and "SIMULATED" in gpu.identity.name
    board.set_load(256, "fp16")
    idle = idle_state(H200, board.settings)
    assert gpu.power_instant().power_mw / 1000 == pytest.approx(idle.power_w)
    assert gpu.clocks_mhz() == (H200.idle_sm_clock_mhz, 3201) and gpu.clock_event_reasons() == 1
    gpu.set_activity(1.0)
    busy = steady_state(H200, board.settings, batch_size=256)
    assert gpu.power_instant().power_mw / 1000 == pytest.approx(busy.power_w)
    board.set_settings(ModelSettings(300.0))
    capped = steady_state(H200, ModelSettings(300.0), batch_size=256)
    assert gpu.power_instant().power_mw / 1000 == pytest.approx(300.0, rel=1e-6)
    assert gpu.power_limit_mw() == 300_000
    assert gpu.clocks_mhz()[0] == round(capped.sm_clock_mhz) < 1980
    assert gpu.clock_event_reasons() == 0x4  # sw_power_cap while the cap holds the clock
    gpu.set_activity(0.5)
    half = idle.power_w + (300.0 - idle.power_w) / 2
    assert gpu.power_instant().power_mw / 1000 == pytest.approx(half, rel=1e-6)


def test_energy_follows_a_settings_change_as_a_knot() -> None:
    board = SimulatedBoard(T4)
    board.set_load(128, "fp16")
    gpu = SimulatedGpu(0, board=board)
    gpu.set_activity(1.0)
    t0 = time.monotonic()
    e0 = gpu.energy_mj()
    full = steady_state(T4, board.settings, batch_size=128).power_w
    time.sleep(0.5)
    board.set_settings(ModelSettings(60.0))
    t1 = time.monotonic()
    time.sleep(0.5)
    e1, t2 = gpu.energy_mj(), time.monotonic()
    truth_j = full * (t1 - t0) + 60.0 * (t2 - t1)
    # the counter updates every 100 ms: one period of power is its resolution
    assert (e1 - e0) / 1000 == pytest.approx(truth_j, abs=0.1 * full + 1.0)


def test_settings_outlive_the_board_in_its_state_dir_like_a_real_gpus(tmp_path: Path) -> None:
    first = SimulatedBoard(H200, 1, state_dir=tmp_path)
    first.set_settings(ModelSettings(350.0, (1200, 1200), None))
    again = SimulatedBoard(H200, 1, state_dir=tmp_path)
    assert again.settings == ModelSettings(350.0, (1200, 1200), None)
    assert SimulatedBoard(H200, 0, state_dir=tmp_path).settings == ModelSettings(700.0)
    (tmp_path / f"{again.uuid}.json").write_text("{torn", encoding="utf-8")
    assert SimulatedBoard(H200, 1, state_dir=tmp_path).settings == ModelSettings(700.0)
    assert not list(tmp_path.glob(".*.tmp"))


def test_listeners_hear_settings_and_load_changes_once_each() -> None:
    board = SimulatedBoard(H200)
    heard: list[int] = []
    board.subscribe(lambda: heard.append(1))
    board.set_settings(ModelSettings(500.0))
    board.set_settings(ModelSettings(500.0))  # no change: not announced
    board.set_load(64, "fp32")
    board.set_load(64, "fp32")
    assert len(heard) == 2
    assert board.describe() == {
        "part": "h200", "index": 0, "simulated": True,
        "power_limit_w": 500.0, "sm_lock_mhz": None, "mem_lock_mhz": None,
    }  # fmt: skip
