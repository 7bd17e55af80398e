"""The narrow GPU boundary the NVML meter samples through: :class:`GpuDevice` and its values.

The meter needs little from a GPU: who it is, its energy counter, the driver's power samples,
two power field values, and some context (power limit, clocks, temperature, clock-event
reasons, utilization, memory power). :class:`GpuDevice` is exactly that, read-only: no setter
is part of it. :class:`infergy.meters.nvml_device.NvmlGpu` implements it over NVML; tests use
a fake with a known power profile. Every method is blocking (call it off the event loop) and
raises only :class:`~infergy.errors.GpuError` subclasses:

- :class:`~infergy.errors.GpuNotSupportedError`: this GPU or driver lacks the signal; skip it.
- :class:`~infergy.errors.GpuLostError`: the GPU fell off the bus or the driver was reloaded;
  the source is down until :meth:`GpuDevice.reconnect` succeeds.
- :class:`~infergy.errors.GpuPermissionError`: the call needs privileges we lack.
- :class:`~infergy.errors.GpuError`: anything else (counted, retried at the next tick).

This module also holds the pure parts of device selection: which NVML devices
``CUDA_VISIBLE_DEVICES`` leaves visible (:func:`select_visible_gpus`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
"""NVML's clock-event ("throttle") reason bits (``nvmlClocksEventReason*``), snake_case names."""


def clock_event_names(mask: int) -> tuple[str, ...]:
    """The names of the reasons set in an NVML clock-event bitmask (unknown bits as hex)."""
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCK_EVENT_REASONS)
    if unknown:
        names.append(f"0x{unknown:x}")
    return tuple(names)


@dataclass(frozen=True)
class GpuIdentity:
    """Who a GPU is.

    Attributes:
        index: the NVML index (PCI bus order), not the CUDA ordinal.
        uuid: ``GPU-...``.
        name: the product name (``NVIDIA H100 80GB HBM3``).
        pci_bus_id: ``00000000:19:00.0``.
        mig_enabled: MIG mode (True/False), or None where NVML cannot tell.
        mig_instances: the MIG device UUIDs of this board that ``CUDA_VISIBLE_DEVICES`` named.
        simulated: True for a simulated board (``infergy.meters.gpu_sim``): not a measurement.
    """

    index: int
    uuid: str
    name: str
    pci_bus_id: str
    mig_enabled: bool | None = None
    mig_instances: tuple[str, ...] = ()
    simulated: bool = False


@dataclass(frozen=True, eq=False)
class PowerSamples:
    """A batch from the driver's power sample buffer (``nvmlDeviceGetSamples``).

    Attributes:
        t_wall_us: the samples' CPU timestamps, µs since the Unix epoch (CLOCK_REALTIME),
            increasing.
        power_mw: board power at each timestamp, mW.
    """

    t_wall_us: npt.NDArray[np.int64]
    power_mw: npt.NDArray[np.float64]

    @classmethod
    def empty(cls) -> PowerSamples:
        """No new samples."""
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))

    def __len__(self) -> int:
        return int(self.t_wall_us.size)


@dataclass(frozen=True)
class FieldReading:
    """One NVML field value (``nvmlDeviceGetFieldValues``).

    Attributes:
        power_mw: the value, mW.
        t_wall_us: NVML's CPU timestamp of the value, µs since the Unix epoch; 0 if not given.
    """

    power_mw: float
    t_wall_us: int = 0


@dataclass(frozen=True)
class GpuContext:
    """The slow context of one GPU at one moment (read at about 1 Hz); None = not available.

    Attributes:
        t_ns: when it was read, on the session clock.
        power_limit_w: the enforced power limit.
        sm_clock_mhz: current SM clock.
        memory_clock_mhz: current memory clock.
        temperature_c: GPU die temperature.
        clock_event_reasons: NVML's clock-event bitmask (see :data:`CLOCK_EVENT_REASONS`).
        gpu_utilization_pct: percent of time a kernel ran over the driver's last period.
        memory_utilization_pct: percent of time device memory was read or written.
        memory_power_w: the memory's average power, where the GPU reports it (H100: yes).
    """

    t_ns: int
    power_limit_w: float | None = None
    sm_clock_mhz: float | None = None
    memory_clock_mhz: float | None = None
    temperature_c: float | None = None
    clock_event_reasons: int | None = None
    gpu_utilization_pct: float | None = None
    memory_utilization_pct: float | None = None
    memory_power_w: float | None = None

    @property
    def clock_events(self) -> tuple[str, ...]:
        """Names of the active clock-event reasons (``sw_power_cap``...); () if unknown."""
        return (
            () if self.clock_event_reasons is None else clock_event_names(self.clock_event_reasons)
        )


@runtime_checkable
class GpuDevice(Protocol):
    """What the NVML meter reads from one GPU. Blocking; raises only ``GpuError`` subclasses."""

    @property
    def identity(self) -> GpuIdentity:
        """Index, UUID, name, PCI bus id, MIG mode (read once, when opened)."""
        ...

    def energy_mj(self) -> int:
        """Energy since the driver was loaded, mJ (``nvmlDeviceGetTotalEnergyConsumption``)."""
        ...

    def power_samples(self, since_wall_us: int) -> PowerSamples:
        """Driver power samples newer than ``since_wall_us`` (0: all buffered); may be empty."""
        ...

    def power_instant(self) -> FieldReading:
        """``NVML_FI_DEV_POWER_INSTANT``: current board power, mW."""
        ...

    def power_average(self) -> FieldReading:
        """``NVML_FI_DEV_POWER_AVERAGE``: board power averaged over the last 1 s, mW."""
        ...

    def memory_power(self) -> FieldReading:
        """``NVML_FI_DEV_POWER_AVERAGE`` in memory scope: memory power over 1 s, mW."""
        ...

    def power_limit_mw(self) -> int:
        """The enforced power limit, mW (``nvmlDeviceGetEnforcedPowerLimit``)."""
        ...

    def clocks_mhz(self) -> tuple[int, int]:
        """Current (SM, memory) clocks, MHz."""
        ...

    def temperature_c(self) -> int:
        """GPU die temperature, °C."""
        ...

    def clock_event_reasons(self) -> int:
        """Current clock-event reasons bitmask (``SwPowerCap`` = 0x4...)."""
        ...

    def utilization_pct(self) -> tuple[int, int]:
        """(GPU, memory) utilization over the driver's last sample period, percent."""
        ...

    def reconnect(self) -> None:
        """Find the GPU again (by UUID) after it was lost; raises while it is still gone."""
        ...


@dataclass
class VisibleGpus:
    """The outcome of :func:`select_visible_gpus`.

    Attributes:
        indices: NVML indices of the visible boards, in NVML index order, each once.
        mig_instances: per board index, the MIG device UUIDs named for it.
        notes: what was ignored and why, for people.
    """

    indices: list[int] = field(default_factory=list)
    mig_instances: dict[int, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


_NO_DEVICES = {"", "none", "void", "nodevfiles"}


def select_visible_gpus(
    gpu_uuids: Sequence[str],
    visible: str | None,
    mig_parent_uuid: Callable[[str], str | None] = lambda _uuid: None,
) -> VisibleGpus:
    """Which boards ``CUDA_VISIBLE_DEVICES`` leaves visible, the way CUDA reads it.

    Entries are indices, ``GPU-`` UUIDs (unique prefixes accepted) or ``MIG-`` device UUIDs
    (mapped to their board: board power is not split per MIG instance, so a board counts once
    however many of its instances are named). As in CUDA, reading stops at the first entry
    that matches nothing. Integer entries are taken as NVML indices, which equal CUDA ordinals
    only with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``: a note says so when that is not set.

    Args:
        gpu_uuids: UUID of each NVML device, by NVML index.
        visible: the variable's value; None when it is unset (every board is visible).
        mig_parent_uuid: maps a ``MIG-`` UUID to its board's ``GPU-`` UUID, None if unknown.
    """
    out = VisibleGpus()
    if visible is None:
        out.indices = list(range(len(gpu_uuids)))
        return out
    if visible.strip().lower() in _NO_DEVICES:
        out.notes.append(f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU")
        return out
    chosen: set[int] = set()
    saw_integer = False
    for raw in visible.split(","):
        entry = raw.strip()
        index = _resolve_entry(entry, gpu_uuids, mig_parent_uuid)
        if index is None:
            out.notes.append(
                f"CUDA_VISIBLE_DEVICES entry {entry!r} matches no GPU: it and the entries "
                "after it are ignored (as CUDA does)"
            )
            break
        saw_integer |= entry.lstrip("+-").isdigit()
        if entry.upper().startswith("MIG-"):
            out.mig_instances.setdefault(index, []).append(entry)
        elif index in chosen:
            out.notes.append(f"CUDA_VISIBLE_DEVICES names GPU {index} twice; counted once")
        chosen.add(index)
    out.indices = sorted(chosen)
    if saw_integer and len(gpu_uuids) > 1:
        out.notes.append(
            "CUDA_VISIBLE_DEVICES indices are read as NVML (PCI bus) indices; set "
            "CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA numbers the GPUs the same way"
        )
    for index, migs in out.mig_instances.items():
        if len(migs) > 1:
            out.notes.append(
                f"GPU {index}: {len(migs)} MIG instances named; its board power is one source "
                "(not split per instance, not counted twice)"
            )
    return out


def _resolve_entry(
    entry: str, gpu_uuids: Sequence[str], mig_parent_uuid: Callable[[str], str | None]
) -> int | None:
    if entry.lstrip("+").isdigit():
        i = int(entry)
        return i if i < len(gpu_uuids) else None
    if entry.upper().startswith("MIG-"):
        parent = mig_parent_uuid(entry)
        return gpu_uuids.index(parent) if parent in gpu_uuids else None
    if entry.upper().startswith("GPU-") and len(entry) > 4:
        hits = [i for i, u in enumerate(gpu_uuids) if u.lower().startswith(entry.lower())]
        return hits[0] if len(hits) == 1 else None
    return None
