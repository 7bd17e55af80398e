""":class:`~infergy.maxq.control.GpuControl` over NVML: power limits and locked clocks.

The setters need root or CAP_SYS_ADMIN. :func:`check_permission` finds out from the process's
credentials (effective uid 0, or bit 21 of ``CapEff`` in ``/proc/self/status``) *before*
anything changes, and raises one clear error otherwise. NVML errors are translated once, by
:func:`infergy.meters.nvml_device.translate_nvml_error`; for the setters, "no permission",
"not supported" and "invalid argument" become :mod:`infergy.maxq.errors` classes with hints.

Application clocks (``nvmlDeviceSetApplicationsClocks``) are deprecated and not used; the v2
power-limit setter is not used either (the binding drops its return code). NVML has no getter
for a clock lock, so :meth:`NvmlGpuControl.settings` reports the locks this object set.

The ``nvml`` argument is the binding module (``pynvml``): tests inject a fake object with the
same function names that raises ``pynvml``'s own error classes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynvml

from infergy.errors import GpuNotSupportedError, GpuPermissionError, InfergyError
from infergy.maxq.control import (
    ClockLockMhz,
    GpuSettings,
    PowerLimitConstraints,
    SupportedClocks,
)
from infergy.maxq.errors import (
    ControlPermissionError,
    SettingOutOfRangeError,
    UnsupportedSettingError,
)
from infergy.meters.nvml_device import NvmlGpu, translate_nvml_error

AMPERE_MAJOR = 8
"""Memory clock locks need compute capability 8.0 (Ampere) or newer."""
CAP_SYS_ADMIN_BIT = 21
"""``CAP_SYS_ADMIN`` in ``linux/capability.h``: what NVML's setters check for."""

PERMISSION_HINT = (
    "run as root, or grant CAP_SYS_ADMIN (systemd: AmbientCapabilities=CAP_SYS_ADMIN); "
    "without it, sweep batch sizes and precisions only"
)
_UNSUPPORTED_HINT = (
    "locked SM clocks need Volta or newer, locked memory clocks Ampere or newer; "
    "sweep the other axes instead"
)


def _has_cap_sys_admin(status_text: str) -> bool:
    """Whether the ``CapEff`` line of a ``/proc/<pid>/status`` text has CAP_SYS_ADMIN."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split(":", 1)[1].strip(), 16) >> CAP_SYS_ADMIN_BIT & 1)
    return False


def check_permission(
    *,
    status_path: Path = Path("/proc/self/status"),
    geteuid: Callable[[], int] = os.geteuid,
) -> None:
    """Raise :class:`ControlPermissionError` unless this process may change GPU settings.

    Args:
        status_path: the process status file to read ``CapEff`` from.
        geteuid: returns the effective uid (injected for tests).
    """
    euid = geteuid()
    if euid == 0:
        return
    try:
        status = status_path.read_text(encoding="ascii", errors="replace")
    except OSError:
        status = ""  # no procfs: only root is known to be allowed
    if _has_cap_sys_admin(status):
        return
    msg = (
        f"changing GPU power limits or clocks needs root or CAP_SYS_ADMIN; this process "
        f"(effective uid {euid}) has neither, so nothing was changed"
    )
    raise ControlPermissionError(msg, hint=PERMISSION_HINT)


def _mw(power_limit_w: float) -> int:
    return round(power_limit_w * 1000)


def _descending(clocks_mhz: Any) -> tuple[int, ...]:
    return tuple(sorted((int(c) for c in clocks_mhz), reverse=True))


class NvmlGpuControl:
    """One GPU's power limit and clock locks over NVML (implements ``GpuControl``).

    Args:
        handle: the ``nvmlDevice_t``.
        label: the GPU for messages (``GPU 0 (NVIDIA H200)``).
        uuid: the GPU's UUID (the journal's key).
        nvml: the binding module (default ``pynvml``); NVML must be initialised by the owner
            (:class:`~infergy.meters.nvml_device.NvmlLibrary`).
        permission_check: called by :meth:`check_permission` (default: :func:`check_permission`).
    """

    simulated = False

    def __init__(
        self,
        handle: Any,
        *,
        label: str,
        uuid: str,
        nvml: Any = pynvml,
        permission_check: Callable[[], None] = check_permission,
    ) -> None:
        self._handle = handle
        self.label = label
        self.uuid = uuid
        self._nvml = nvml
        self._permission_check = permission_check
        self._sm_lock: ClockLockMhz | None = None
        self._mem_lock: ClockLockMhz | None = None

    @classmethod
    def for_gpu(cls, gpu: NvmlGpu, *, nvml: Any = pynvml) -> NvmlGpuControl:
        """The control of a GPU the NVML meter already opened."""
        return cls(gpu.handle, label=gpu.label, uuid=gpu.identity.uuid, nvml=nvml)

    def _call(self, what: str, name: str, *args: Any, hint: str | None = None) -> Any:
        """Call ``nvml.<name>(handle, *args)``, translating its errors for a setter's caller."""
        try:
            return getattr(self._nvml, name)(self._handle, *args)
        except pynvml.NVMLError as err:
            raise self._translate(err, what, hint) from err

    def _translate(self, err: pynvml.NVMLError, what: str, hint: str | None) -> InfergyError:
        if getattr(err, "value", None) == pynvml.NVML_ERROR_INVALID_ARGUMENT:
            msg = f"{self.label}: cannot {what}: NVML refused the value (invalid argument)"
            return SettingOutOfRangeError(msg, hint=hint)
        translated = translate_nvml_error(err, what, self.label)
        if isinstance(translated, GpuPermissionError):
            return ControlPermissionError(str(translated), hint=PERMISSION_HINT)
        if isinstance(translated, GpuNotSupportedError):
            return UnsupportedSettingError(str(translated), hint=_UNSUPPORTED_HINT)
        return translated  # lost GPU, driver errors...: already one of ours, with its hint

    # -- reads ---------------------------------------------------------------------------------

    def check_permission(self) -> None:
        """Raise :class:`ControlPermissionError` if this process may not change settings."""
        self._permission_check()

    def power_limit_constraints(self) -> PowerLimitConstraints:
        """``nvmlDeviceGetPowerManagementLimitConstraints`` and ``...DefaultLimit``, in W."""
        lo_mw, hi_mw = self._call(
            "read the power limit constraints", "nvmlDeviceGetPowerManagementLimitConstraints"
        )
        default_mw = self._call(
            "read the default power limit", "nvmlDeviceGetPowerManagementDefaultLimit"
        )
        return PowerLimitConstraints(int(lo_mw) / 1000, int(hi_mw) / 1000, int(default_mw) / 1000)

    def enforced_power_limit_w(self) -> float:
        """``nvmlDeviceGetEnforcedPowerLimit``, in W."""
        mw = self._call("read the enforced power limit", "nvmlDeviceGetEnforcedPowerLimit")
        return int(mw) / 1000

    def settings(self) -> GpuSettings:
        """The requested limit (``nvmlDeviceGetPowerManagementLimit``) and the locks set here."""
        mw = self._call("read the power limit", "nvmlDeviceGetPowerManagementLimit")
        return GpuSettings(int(mw) / 1000, self._sm_lock, self._mem_lock)

    def supported_clocks(self) -> SupportedClocks:
        """``nvmlDeviceGetSupportedMemoryClocks`` and, per memory clock, the graphics clocks."""
        mems = _descending(
            self._call("read the memory clocks", "nvmlDeviceGetSupportedMemoryClocks")
        )
        sm_by_mem = {
            mem: _descending(
                self._call("read the SM clocks", "nvmlDeviceGetSupportedGraphicsClocks", mem)
            )
            for mem in mems
        }
        return SupportedClocks(mems, sm_by_mem)

    def supports_memory_lock(self) -> bool | None:
        """Compute capability >= 8.0 (``nvmlDeviceGetCudaComputeCapability``); None: unknown."""
        try:
            major, _minor = self._call(
                "read the compute capability", "nvmlDeviceGetCudaComputeCapability"
            )
        except (InfergyError, AttributeError, TypeError, ValueError):
            return None
        return int(major) >= AMPERE_MAJOR

    # -- setters -------------------------------------------------------------------------------

    def set_power_limit_w(self, power_limit_w: float) -> None:
        """Check the value against the constraints, then ``nvmlDeviceSetPowerManagementLimit``."""
        constraints = self.power_limit_constraints()
        constraints.check(power_limit_w, self.label)
        self._call(
            f"set the power limit to {power_limit_w:g} W",
            "nvmlDeviceSetPowerManagementLimit",
            _mw(power_limit_w),
            hint=f"choose limits within {constraints.range_text}",
        )

    def reset_power_limit(self) -> None:
        """Set the default limit (NVML has no reset call for it)."""
        self.set_power_limit_w(self.power_limit_constraints().default_w)

    def lock_sm_clocks_mhz(self, min_mhz: int, max_mhz: int) -> None:
        """``nvmlDeviceSetGpuLockedClocks`` after checking the range against the supported list."""
        self.supported_clocks().check_sm_lock(min_mhz, max_mhz, self.label)
        self._call(
            f"lock the SM clock to {min_mhz}-{max_mhz} MHz",
            "nvmlDeviceSetGpuLockedClocks",
            min_mhz,
            max_mhz,
        )
        self._sm_lock = (min_mhz, max_mhz)

    def reset_sm_clocks(self) -> None:
        """``nvmlDeviceResetGpuLockedClocks``."""
        self._call("reset the SM clock lock", "nvmlDeviceResetGpuLockedClocks")
        self._sm_lock = None

    def lock_mem_clocks_mhz(self, min_mhz: int, max_mhz: int) -> None:
        """``nvmlDeviceSetMemoryLockedClocks`` after checking the range."""
        self.supported_clocks().check_mem_lock(min_mhz, max_mhz, self.label)
        self._call(
            f"lock the memory clock to {min_mhz}-{max_mhz} MHz",
            "nvmlDeviceSetMemoryLockedClocks",
            min_mhz,
            max_mhz,
        )
        self._mem_lock = (min_mhz, max_mhz)

    def reset_mem_clocks(self) -> None:
        """``nvmlDeviceResetMemoryLockedClocks``."""
        self._call("reset the memory clock lock", "nvmlDeviceResetMemoryLockedClocks")
        self._mem_lock = None
