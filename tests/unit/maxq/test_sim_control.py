"""SimulatedGpuControl: validates like NVML, follows the model, labels itself, fails on demand."""

from __future__ import annotations

import pytest

from infergy.core.gpu_model import H200, T4
from infergy.maxq.control import GpuControl, GpuSettings, apply_settings
from infergy.maxq.errors import (
    ControlError,
    ControlPermissionError,
    SettingOutOfRangeError,
    UnsupportedSettingError,
)
from infergy.maxq.sim_control import SimulatedGpuControl


def test_it_implements_the_protocol_and_says_simulated_everywhere():
    gpu = SimulatedGpuControl(H200, index=3)
    assert isinstance(gpu, GpuControl)
    assert gpu.simulated is True
    assert gpu.settings().simulated is True
    assert "SIMULATED" in gpu.label and "SIMULATED" in gpu.settings().describe()
    assert gpu.uuid == "GPU-simulated-h200-0003"
    assert gpu.operating_point(batch_size=8).simulated


def test_settings_follow_the_setters_and_the_model_follows_the_settings():
    gpu = SimulatedGpuControl(H200)
    before = gpu.operating_point(batch_size=256)
    gpu.set_power_limit_w(300)
    gpu.lock_mem_clocks_mhz(2201, 2201)
    assert gpu.settings() == GpuSettings(300.0, None, (2201, 2201), simulated=True)
    assert gpu.enforced_power_limit_w() == 300.0
    after = gpu.operating_point(batch_size=256)
    assert after.power_w == pytest.approx(300, rel=1e-6) and after.mem_clock_mhz == 2201
    assert after.samples_per_second < before.samples_per_second
    gpu.reset_power_limit()
    gpu.reset_mem_clocks()
    assert gpu.operating_point(batch_size=256) == before


def test_out_of_range_values_are_refused_before_the_state_changes():
    gpu = SimulatedGpuControl(H200)
    with pytest.raises(SettingOutOfRangeError, match="allowed range 200-700 W"):
        gpu.set_power_limit_w(150)
    with pytest.raises(SettingOutOfRangeError, match="range 345-1980 MHz"):
        gpu.lock_sm_clocks_mhz(300, 1000)
    assert gpu.settings() == GpuSettings(700.0, simulated=True)
    assert gpu.setter_calls == []


def test_a_turing_part_cannot_lock_or_reset_memory_clocks_but_restores_anyway():
    gpu = SimulatedGpuControl(T4)
    with pytest.raises(UnsupportedSettingError, match="memory clock locks"):
        gpu.lock_mem_clocks_mhz(5001, 5001)
    gpu.set_power_limit_w(60)
    apply_settings(gpu, GpuSettings(70.0))  # skips the unsupported memory reset
    assert gpu.settings() == GpuSettings(70.0, simulated=True)


def test_without_permission_the_check_and_every_setter_refuse():
    gpu = SimulatedGpuControl(H200, permitted=False)
    with pytest.raises(ControlPermissionError):
        gpu.check_permission()
    with pytest.raises(ControlPermissionError):
        gpu.set_power_limit_w(300)
    assert gpu.settings().power_limit_w == 700.0


def test_the_nth_setter_call_fails_once_and_changes_nothing():
    gpu = SimulatedGpuControl(H200, fail_on_setter_call=2)
    gpu.set_power_limit_w(400)
    with pytest.raises(ControlError, match="injected failure"):
        gpu.lock_sm_clocks_mhz(1200, 1200)
    assert gpu.settings().sm_lock_mhz is None
    gpu.lock_sm_clocks_mhz(1200, 1200)  # the third call succeeds
    assert gpu.settings().sm_lock_mhz == (1200, 1200)
    assert [name for name, _ in gpu.setter_calls] == [
        "set_power_limit_w",
        "lock_sm_clocks_mhz",
        "lock_sm_clocks_mhz",
    ]


def test_idle_point_responds_to_a_locked_minimum():
    gpu = SimulatedGpuControl(H200)
    assert gpu.idle_point().sm_clock_mhz == 345
    gpu.lock_sm_clocks_mhz(1000, 1980)
    assert gpu.idle_point().sm_clock_mhz == 1000
