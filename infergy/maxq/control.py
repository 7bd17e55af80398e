"""The narrow boundary MaxQ changes a GPU through: :class:`GpuControl` and its values.

A tuning session needs little: what the GPU allows (power-limit constraints, the default
limit, the supported clocks), what is set now (:class:`GpuSettings`), the *enforced* limit
(which another limiter, such as a BMC cap, can hold below the requested one), and six setters.
:class:`~infergy.maxq.nvml_control.NvmlGpuControl` implements it over NVML,
:class:`~infergy.maxq.sim_control.SimulatedGpuControl` over the physically shaped model in
:mod:`infergy.core.gpu_model`. Calls are blocking and raise :class:`~infergy.maxq.errors`
classes (or a translated :class:`~infergy.errors.GpuError`).

NVML has no getter for a clock lock: a control reports the locks *it* set (None otherwise),
and restoring "unlocked" therefore always calls the reset, never skips it as already done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from infergy.maxq.errors import SettingOutOfRangeError, UnsupportedSettingError

POWER_TOLERANCE_W = 0.001
"""NVML keeps power limits in whole milliwatts: two limits within 1 mW are the same."""

ClockLockMhz = tuple[int, int]
"""A locked clock range (min MHz, max MHz); min == max pins the clock."""


@dataclass(frozen=True)
class GpuSettings:
    """What MaxQ changes on one GPU, as set (not as the clocks happen to run now).

    Attributes:
        power_limit_w: the requested power-management limit.
        sm_lock_mhz: the SM (graphics) clock lock, or None when unlocked (the driver default).
        mem_lock_mhz: the memory clock lock, or None when unlocked.
        simulated: True for a simulated GPU: not a real device's settings.
    """

    power_limit_w: float
    sm_lock_mhz: ClockLockMhz | None = None
    mem_lock_mhz: ClockLockMhz | None = None
    simulated: bool = False

    def differences(self, other: GpuSettings) -> list[str]:
        """What differs from ``other`` (the expected settings), one phrase per setting."""
        out = []
        if abs(self.power_limit_w - other.power_limit_w) > POWER_TOLERANCE_W:
            out.append(f"power limit {self.power_limit_w:g} W, expected {other.power_limit_w:g} W")
        for name, got, want in (
            ("SM clock lock", self.sm_lock_mhz, other.sm_lock_mhz),
            ("memory clock lock", self.mem_lock_mhz, other.mem_lock_mhz),
        ):
            if got != want:
                out.append(f"{name} {_lock_text(got)}, expected {_lock_text(want)}")
        return out

    def describe(self) -> str:
        """One line for people: ``700 W, SM unlocked, memory 2201 MHz (SIMULATED)``."""
        text = (
            f"{self.power_limit_w:g} W, SM {_lock_text(self.sm_lock_mhz)}, "
            f"memory {_lock_text(self.mem_lock_mhz)}"
        )
        return f"{text} (SIMULATED)" if self.simulated else text


def _lock_text(lock: ClockLockMhz | None) -> str:
    if lock is None:
        return "unlocked"
    lo, hi = lock
    return f"{lo} MHz" if lo == hi else f"{lo}-{hi} MHz"


@dataclass(frozen=True)
class PowerLimitConstraints:
    """The power limits a GPU accepts and its default (``nvidia-smi -q -d POWER``).

    Attributes:
        min_w: the lowest settable limit.
        max_w: the highest settable limit.
        default_w: the limit the board starts with (what a reset restores).
    """

    min_w: float
    max_w: float
    default_w: float

    def check(self, power_limit_w: float, label: str = "GPU") -> None:
        """Raise :class:`SettingOutOfRangeError` naming the allowed range if outside it."""
        if not (self.min_w - POWER_TOLERANCE_W <= power_limit_w <= self.max_w + POWER_TOLERANCE_W):
            msg = (
                f"{label}: power limit {power_limit_w:g} W is outside the allowed range "
                f"{self.min_w:g}-{self.max_w:g} W (default {self.default_w:g} W)"
            )
            raise SettingOutOfRangeError(msg, hint=f"choose limits within {self.range_text}")

    @property
    def range_text(self) -> str:
        """``200-700 W``."""
        return f"{self.min_w:g}-{self.max_w:g} W"


@dataclass(frozen=True)
class SupportedClocks:
    """The clocks a GPU can run at (``nvidia-smi -q -d SUPPORTED_CLOCKS``).

    Attributes:
        mem_mhz: supported memory clocks, highest first.
        sm_mhz_by_mem: for each memory clock, the supported SM clocks, highest first.
    """

    mem_mhz: tuple[int, ...]
    sm_mhz_by_mem: Mapping[int, tuple[int, ...]] = field(default_factory=dict)

    def sm_mhz(self, mem_mhz: int | None = None) -> tuple[int, ...]:
        """SM clocks supported at ``mem_mhz`` (default: the highest memory clock)."""
        mem = self.mem_mhz[0] if mem_mhz is None else mem_mhz
        return self.sm_mhz_by_mem.get(mem, ())

    def check_sm_lock(self, min_mhz: int, max_mhz: int, label: str = "GPU") -> None:
        """Raise :class:`SettingOutOfRangeError` unless min <= max within the SM clock range."""
        _check_lock("SM", self.sm_mhz(), min_mhz, max_mhz, label)

    def check_mem_lock(self, min_mhz: int, max_mhz: int, label: str = "GPU") -> None:
        """Raise :class:`SettingOutOfRangeError` unless min <= max within the memory clocks."""
        _check_lock("memory", self.mem_mhz, min_mhz, max_mhz, label)


def _check_lock(
    domain: str, supported: tuple[int, ...], min_mhz: int, max_mhz: int, label: str
) -> None:
    if not supported:
        msg = f"{label}: the GPU reports no supported {domain} clocks"
        raise SettingOutOfRangeError(msg)
    lo, hi = min(supported), max(supported)
    if min_mhz > max_mhz or min_mhz < lo or max_mhz > hi:
        msg = (
            f"{label}: {domain} clock lock {min_mhz}-{max_mhz} MHz is outside the supported "
            f"range {lo}-{hi} MHz"
        )
        raise SettingOutOfRangeError(msg, hint=f"choose {domain} clocks within {lo}-{hi} MHz")


@runtime_checkable
class GpuControl(Protocol):
    """Read and change one GPU's power limit and clock locks (blocking calls).

    Attributes:
        label: who it is, for messages (``GPU 0 (NVIDIA H200)``).
        uuid: the GPU's UUID: the journal's key, stable across restarts and re-enumeration.
        simulated: True for a simulated GPU (everything it reports is labelled SIMULATED).
    """

    label: str
    uuid: str
    simulated: bool

    def check_permission(self) -> None:
        """Raise :class:`~infergy.maxq.errors.ControlPermissionError` if setters would fail.

        Called before anything changes, so a missing privilege leaves the GPU untouched.
        """

    def power_limit_constraints(self) -> PowerLimitConstraints:
        """The settable range and the default limit."""

    def enforced_power_limit_w(self) -> float:
        """The limit the GPU enforces now (can be below the requested one)."""

    def settings(self) -> GpuSettings:
        """The current requested power limit and the locks this control set."""

    def supported_clocks(self) -> SupportedClocks:
        """The supported memory clocks and, per memory clock, SM clocks."""

    def supports_memory_lock(self) -> bool | None:
        """Whether memory clocks can be locked (Ampere and newer); None when unknown."""

    def set_power_limit_w(self, power_limit_w: float) -> None:
        """Request a power limit (within :meth:`power_limit_constraints`)."""

    def reset_power_limit(self) -> None:
        """Request the default power limit."""

    def lock_sm_clocks_mhz(self, min_mhz: int, max_mhz: int) -> None:
        """Lock the SM clock to [min, max] MHz."""

    def reset_sm_clocks(self) -> None:
        """Remove the SM clock lock (the driver's default boost behaviour)."""

    def lock_mem_clocks_mhz(self, min_mhz: int, max_mhz: int) -> None:
        """Lock the memory clock to [min, max] MHz."""

    def reset_mem_clocks(self) -> None:
        """Remove the memory clock lock."""


def apply_settings(control: GpuControl, target: GpuSettings) -> None:
    """Set ``control`` to ``target``: power limit, then both clock locks (or their resets).

    Every setting is written even when it looks unchanged: a lock cannot be read back from
    NVML, so a reset after a crash must not be skipped as "already unlocked". A reset the GPU
    does not support (memory clock locks before Ampere) is skipped: such a GPU cannot have
    been locked either.
    """
    control.set_power_limit_w(target.power_limit_w)
    if target.sm_lock_mhz is None:
        _reset(control.reset_sm_clocks)
    else:
        control.lock_sm_clocks_mhz(*target.sm_lock_mhz)
    if target.mem_lock_mhz is None:
        _reset(control.reset_mem_clocks)
    else:
        control.lock_mem_clocks_mhz(*target.mem_lock_mhz)


def _reset(reset: Callable[[], None]) -> None:
    with contextlib.suppress(UnsupportedSettingError):
        reset()
