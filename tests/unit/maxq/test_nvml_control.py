"""NvmlGpuControl over a fake binding module: the calls it makes and how NVML errors leave it.

The fake has pynvml's function names and raises pynvml's own error classes, so the translation
through ``infergy.meters.nvml_device.translate_nvml_error`` runs for real. No real setter is
ever called: there is no GPU here, and lent GPUs must never be changed.
"""

from __future__ import annotations

import pynvml
import pytest

from infergy.errors import GpuError, GpuLostError
from infergy.maxq.control import GpuControl, GpuSettings, apply_settings
from infergy.maxq.errors import (
    ControlPermissionError,
    SettingOutOfRangeError,
    UnsupportedSettingError,
)
from infergy.maxq.nvml_control import NvmlGpuControl, check_permission

HANDLE = object()
SM_MHZ = list(range(1980, 344, -15))


class FakeNvml:
    """The NVML calls NvmlGpuControl uses, over the H200 values nvidia-smi reported."""

    def __init__(self) -> None:
        self.limit_mw = 700_000
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.fail: dict[str, type[pynvml.NVMLError]] = {}

    def _enter(self, name: str, handle: object, *args: object) -> None:
        assert handle is HANDLE, f"{name} called with another handle"
        self.calls.append((name, args))
        if name in self.fail:
            raise self.fail[name]()

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h):
        self._enter("constraints", h)
        return [200_000, 700_000]

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h):
        self._enter("default", h)
        return 700_000

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        self._enter("enforced", h)
        return min(self.limit_mw, 650_000)  # a BMC cap holding it lower

    def nvmlDeviceGetPowerManagementLimit(self, h):
        self._enter("limit", h)
        return self.limit_mw

    def nvmlDeviceGetSupportedMemoryClocks(self, h):
        self._enter("mem_clocks", h)
        return [2201, 3201]  # deliberately not sorted

    def nvmlDeviceGetSupportedGraphicsClocks(self, h, mem):
        self._enter("sm_clocks", h, mem)
        return list(reversed(SM_MHZ))

    def nvmlDeviceSetPowerManagementLimit(self, h, mw):
        self._enter("set_limit", h, mw)
        self.limit_mw = mw

    def nvmlDeviceSetGpuLockedClocks(self, h, lo, hi):
        self._enter("lock_sm", h, lo, hi)

    def nvmlDeviceResetGpuLockedClocks(self, h):
        self._enter("reset_sm", h)

    def nvmlDeviceSetMemoryLockedClocks(self, h, lo, hi):
        self._enter("lock_mem", h, lo, hi)

    def nvmlDeviceResetMemoryLockedClocks(self, h):
        self._enter("reset_mem", h)

    def setter_calls(self) -> list[str]:
        return [n for n, _ in self.calls if n.startswith(("set_", "lock_", "reset_"))]


@pytest.fixture
def nvml() -> FakeNvml:
    return FakeNvml()


@pytest.fixture
def control(nvml: FakeNvml) -> NvmlGpuControl:
    return NvmlGpuControl(HANDLE, label="GPU 0 (NVIDIA H200)", uuid="GPU-h200", nvml=nvml)


def test_it_implements_the_protocol_and_is_not_simulated(control):
    assert isinstance(control, GpuControl)
    assert control.simulated is False


def test_reads_convert_milliwatts_and_sort_clocks(control):
    c = control.power_limit_constraints()
    assert (c.min_w, c.max_w, c.default_w) == (200.0, 700.0, 700.0)
    assert control.enforced_power_limit_w() == 650.0  # the enforced, not the requested, limit
    assert control.settings() == GpuSettings(700.0, None, None)
    clocks = control.supported_clocks()
    assert clocks.mem_mhz == (3201, 2201)
    assert clocks.sm_mhz(2201)[0] == 1980 and clocks.sm_mhz()[-1] == 345


def test_setters_call_nvml_with_milliwatts_and_megahertz(control, nvml):
    control.set_power_limit_w(412.5)
    control.lock_sm_clocks_mhz(1200, 1500)
    control.lock_mem_clocks_mhz(2201, 2201)
    assert ("set_limit", (412_500,)) in nvml.calls
    assert ("lock_sm", (1200, 1500)) in nvml.calls
    assert ("lock_mem", (2201, 2201)) in nvml.calls
    assert control.settings() == GpuSettings(412.5, (1200, 1500), (2201, 2201))
    control.reset_sm_clocks()
    control.reset_mem_clocks()
    control.reset_power_limit()
    assert control.settings() == GpuSettings(700.0, None, None)
    assert nvml.setter_calls()[-3:] == ["reset_sm", "reset_mem", "set_limit"]


@pytest.mark.parametrize("watts", [150.0, 199.9, 700.5, 1000.0])
def test_a_limit_outside_the_constraints_names_the_range_and_calls_no_setter(control, nvml, watts):
    with pytest.raises(SettingOutOfRangeError, match=r"outside the allowed range 200-700 W"):
        control.set_power_limit_w(watts)
    assert nvml.setter_calls() == []


@pytest.mark.parametrize(
    ("lo", "hi", "domain"),
    [(300, 1500, "SM"), (1200, 2100, "SM"), (1500, 1200, "SM")],
)
def test_an_sm_lock_outside_the_supported_clocks_is_refused_before_nvml(
    control, nvml, lo, hi, domain
):
    with pytest.raises(SettingOutOfRangeError, match=rf"{domain} clock lock .* range 345-1980 MHz"):
        control.lock_sm_clocks_mhz(lo, hi)
    assert nvml.setter_calls() == []


def test_memory_lock_outside_the_memory_clocks_is_refused(control, nvml):
    with pytest.raises(SettingOutOfRangeError, match="memory clock lock 1000-1000 MHz"):
        control.lock_mem_clocks_mhz(1000, 1000)
    assert nvml.setter_calls() == []


@pytest.mark.parametrize(
    ("nvml_error", "ours", "words"),
    [
        (pynvml.NVMLError_NoPermission, ControlPermissionError, "Insufficient Permissions"),
        (pynvml.NVMLError_NotSupported, UnsupportedSettingError, "not supported"),
        (pynvml.NVMLError_InvalidArgument, SettingOutOfRangeError, "invalid argument"),
        (pynvml.NVMLError_GpuIsLost, GpuLostError, "GPU is lost"),
        (pynvml.NVMLError_Unknown, GpuError, "Unknown Error"),
    ],
)
def test_setter_errors_leave_translated_with_the_gpu_and_the_call(
    control, nvml, nvml_error, ours, words
):
    nvml.fail["lock_sm"] = nvml_error
    with pytest.raises(ours) as info:
        control.lock_sm_clocks_mhz(1200, 1500)
    assert type(info.value) is ours
    assert isinstance(info.value.__cause__, nvml_error)
    text = str(info.value)
    assert "GPU 0 (NVIDIA H200)" in text and "lock the SM clock to 1200-1500 MHz" in text
    assert words in text
    assert control.settings().sm_lock_mhz is None, "a failed lock must not be reported as set"


def test_permission_error_hint_says_how_to_grant_it(control, nvml):
    nvml.fail["set_limit"] = pynvml.NVMLError_NoPermission
    with pytest.raises(ControlPermissionError) as info:
        control.set_power_limit_w(300)
    assert info.value.hint and "CAP_SYS_ADMIN" in info.value.hint


def test_invalid_argument_on_the_limit_carries_the_allowed_range(control, nvml):
    nvml.fail["set_limit"] = pynvml.NVMLError_InvalidArgument
    with pytest.raises(SettingOutOfRangeError) as info:
        control.set_power_limit_w(300)
    assert info.value.hint == "choose limits within 200-700 W"


def test_reads_translate_too(control, nvml):
    nvml.fail["constraints"] = pynvml.NVMLError_NotSupported
    with pytest.raises(UnsupportedSettingError, match="read the power limit constraints"):
        control.power_limit_constraints()


def test_apply_settings_skips_an_unsupported_reset_but_not_an_unsupported_lock(control, nvml):
    nvml.fail["reset_mem"] = pynvml.NVMLError_NotSupported  # a Turing board: no memory locks
    apply_settings(control, GpuSettings(300.0))
    assert nvml.setter_calls() == ["set_limit", "reset_sm", "reset_mem"]
    nvml.fail["lock_mem"] = pynvml.NVMLError_NotSupported
    with pytest.raises(UnsupportedSettingError):
        apply_settings(control, GpuSettings(300.0, None, (2201, 2201)))


# -- the permission check ----------------------------------------------------------------------

STATUS = "Name:\tpython\nUid:\t1000\t1000\t1000\t1000\nCapEff:\t{cap}\nCapBnd:\t000001ffffffffff\n"


def status_file(tmp_path, cap: str):
    path = tmp_path / "status"
    path.write_text(STATUS.format(cap=cap))
    return path


def test_root_may_change_settings_without_reading_capabilities(tmp_path):
    check_permission(status_path=tmp_path / "absent", geteuid=lambda: 0)


def test_cap_sys_admin_alone_is_enough(tmp_path):
    check_permission(status_path=status_file(tmp_path, f"{1 << 21:016x}"), geteuid=lambda: 1000)


@pytest.mark.parametrize("cap", ["0000000000000000", f"{(1 << 22) | (1 << 20):016x}"])
def test_without_root_or_cap_sys_admin_one_clear_error(tmp_path, cap):
    with pytest.raises(ControlPermissionError) as info:
        check_permission(status_path=status_file(tmp_path, cap), geteuid=lambda: 1000)
    assert "effective uid 1000" in str(info.value)
    assert "nothing was changed" in str(info.value)


def test_without_procfs_only_root_is_allowed(tmp_path):
    with pytest.raises(ControlPermissionError):
        check_permission(status_path=tmp_path / "absent", geteuid=lambda: 1000)


def test_the_control_runs_the_injected_check(nvml):
    def refuse() -> None:
        raise ControlPermissionError("no")

    control = NvmlGpuControl(HANDLE, label="g", uuid="u", nvml=nvml, permission_check=refuse)
    with pytest.raises(ControlPermissionError):
        control.check_permission()
    assert nvml.calls == [], "the permission check must not touch NVML"


def test_memory_lock_support_comes_from_the_compute_capability(control, nvml):
    assert control.supports_memory_lock() is None  # the binding lacks the call: unknown
    nvml.nvmlDeviceGetCudaComputeCapability = lambda h: (9, 0)  # H200: Hopper
    assert control.supports_memory_lock() is True
    nvml.nvmlDeviceGetCudaComputeCapability = lambda h: (7, 5)  # T4: Turing
    assert control.supports_memory_lock() is False
    assert nvml.setter_calls() == []
