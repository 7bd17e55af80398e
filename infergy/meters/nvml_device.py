"""The real :class:`~infergy.meters.gpu.GpuDevice` over NVML (``nvidia-ml-py``), read-only.

Every NVML error is translated here, once, by :func:`translate_nvml_error` (a table from
``pynvml.NVMLError_*`` classes to infergy's ``GpuError`` subclasses); the rest of infergy never
sees a ``pynvml`` exception. Nothing here calls an NVML setter (power limits, clocks,
persistence, resets): this code runs on lent and shared GPUs.

NVML is initialised by :class:`NvmlLibrary` when opened, never at import. Usage::

    with NvmlLibrary() as nvml:
        gpus, notes = nvml.visible_gpus()
        print(gpus[0].identity.name, gpus[0].energy_mj())
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np
import pynvml

from infergy.errors import GpuError, GpuLostError, GpuNotSupportedError, GpuPermissionError
from infergy.meters.gpu import FieldReading, GpuIdentity, PowerSamples, select_visible_gpus

P = ParamSpec("P")
R = TypeVar("R")

_DRIVER_HINT = (
    "install the NVIDIA driver (libnvidia-ml.so.1); in a container, run it with the NVIDIA "
    "Container Toolkit (--gpus all)"
)
_EXCEPTION_MAP: dict[str, tuple[type[GpuError], str | None]] = {
    # name of the pynvml class -> (our class, hint); looked up by name so that a binding
    # lacking one of them (older nvidia-ml-py) still imports.
    "NVMLError_NotSupported": (GpuNotSupportedError, None),
    "NVMLError_FunctionNotFound": (
        GpuNotSupportedError,
        "the installed driver predates this NVML call; a newer driver adds it",
    ),
    "NVMLError_NoPermission": (
        GpuPermissionError,
        "run as root or with the needed capability (infergy itself only reads)",
    ),
    "NVMLError_GpuIsLost": (GpuLostError, "the GPU fell off the bus: check dmesg for Xid errors"),
    "NVMLError_GpuNotFound": (GpuLostError, None),
    "NVMLError_ResetRequired": (GpuLostError, "the GPU needs a reset before it can be read"),
    "NVMLError_DriverNotLoaded": (GpuLostError, "load the NVIDIA kernel module"),
    "NVMLError_Uninitialized": (GpuLostError, None),
    "NVMLError_LibRmVersionMismatch": (
        GpuLostError,
        "the driver was upgraded under a running process: reload it or reboot",
    ),
    "NVMLError_LibraryNotFound": (GpuError, _DRIVER_HINT),
}
_TRANSLATION: dict[type[BaseException], tuple[type[GpuError], str | None]] = {
    getattr(pynvml, name): target
    for name, target in _EXCEPTION_MAP.items()
    if hasattr(pynvml, name)
}


def translate_nvml_error(err: BaseException, what: str, device: str = "NVML") -> GpuError:
    """The infergy error for an NVML error: the one place ``pynvml`` errors are translated.

    Args:
        err: the ``pynvml.NVMLError`` raised.
        what: the call, for people (``read the energy counter``).
        device: which GPU (``gpu0 (NVIDIA H100 ...)``) or ``NVML``.
    """
    cls, hint = _TRANSLATION.get(type(err), (GpuError, None))
    message = f"{device}: cannot {what}: {err}"
    if cls is GpuNotSupportedError:
        message = f"{device}: {what}: not supported by this GPU or driver ({err})"
    return cls(message, hint=hint)


def nvml_call(what: str, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call one ``pynvml`` function, translating its errors (for calls outside a device)."""
    try:
        return fn(*args, **kwargs)
    except pynvml.NVMLError as err:
        raise translate_nvml_error(err, what) from err


def _translated(
    what: str,
) -> Callable[[Callable[Concatenate[NvmlGpu, P], R]], Callable[Concatenate[NvmlGpu, P], R]]:
    """Decorate an :class:`NvmlGpu` method so NVML errors leave it translated."""

    def decorate(
        method: Callable[Concatenate[NvmlGpu, P], R],
    ) -> Callable[Concatenate[NvmlGpu, P], R]:
        @functools.wraps(method)
        def wrapper(self: NvmlGpu, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(self, *args, **kwargs)
            except pynvml.NVMLError as err:
                raise translate_nvml_error(err, what, self.label) from err

        return wrapper

    return decorate


_POWER_SCOPE_MEMORY = getattr(pynvml, "NVML_POWER_SCOPE_MEMORY", 2)
_VALUE_MEMBER = dict(enumerate(("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")))
"""``nvmlValueType_t`` (NVML_VALUE_TYPE_DOUBLE = 0 ...) -> the ``nvmlValue_t`` member to read."""


def _value_of(value_type: int, value: Any) -> float:
    """Decode an ``nvmlValue_t`` union by its ``nvmlValueType_t``."""
    member = _VALUE_MEMBER.get(int(value_type))
    if member is None:
        msg = f"NVML returned a value of unknown type {value_type}"
        raise GpuError(msg)
    return float(getattr(value, member))


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlGpu:
    """One physical GPU over NVML; implements :class:`~infergy.meters.gpu.GpuDevice`.

    Get instances from :meth:`NvmlLibrary.visible_gpus`. Calls are blocking; the handle is
    re-resolved by UUID in :meth:`reconnect` after the GPU was lost.
    """

    def __init__(self, library: NvmlLibrary, handle: Any, identity: GpuIdentity) -> None:
        self._library = library
        self._handle = handle
        self._identity = identity
        self.label = f"GPU {identity.index} ({identity.name})"

    @property
    def identity(self) -> GpuIdentity:
        """Index, UUID, name, PCI bus id, MIG mode."""
        return self._identity

    @property
    def handle(self) -> Any:
        """The raw ``nvmlDevice_t`` (for benchmarks comparing against direct NVML calls)."""
        return self._handle

    @_translated("read the energy counter")
    def energy_mj(self) -> int:
        """Energy since the driver was loaded, mJ."""
        return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    @_translated("read the power sample buffer")
    def power_samples(self, since_wall_us: int) -> PowerSamples:
        """Power samples newer than ``since_wall_us`` (CPU µs); empty when there are none."""
        try:
            value_type, samples = pynvml.nvmlDeviceGetSamples(
                self._handle, pynvml.NVML_TOTAL_POWER_SAMPLES, since_wall_us
            )
        except pynvml.NVMLError_NotFound:  # NVML's answer when no sample is newer
            return PowerSamples.empty()
        t = np.fromiter((s.timeStamp for s in samples), dtype=np.int64, count=len(samples))
        mw = np.fromiter(
            (_value_of(value_type, s.sampleValue) for s in samples),
            dtype=np.float64,
            count=len(samples),
        )
        order = np.argsort(t, kind="stable")
        t, mw = t[order], mw[order]
        keep = t > since_wall_us
        return PowerSamples(t[keep], mw[keep])

    def _field(self, field_id: int, scope: int | None = None) -> FieldReading:
        request = field_id if scope is None else (field_id, scope)
        (value,) = pynvml.nvmlDeviceGetFieldValues(self._handle, [request])
        if int(value.nvmlReturn) != pynvml.NVML_SUCCESS:
            raise pynvml.NVMLError(int(value.nvmlReturn))  # the per-field status, translated
        return FieldReading(_value_of(value.valueType, value.value), int(value.timestamp))

    @_translated("read NVML_FI_DEV_POWER_INSTANT")
    def power_instant(self) -> FieldReading:
        """Current board power, mW."""
        return self._field(pynvml.NVML_FI_DEV_POWER_INSTANT)

    @_translated("read NVML_FI_DEV_POWER_AVERAGE")
    def power_average(self) -> FieldReading:
        """Board power averaged over the last second, mW."""
        return self._field(pynvml.NVML_FI_DEV_POWER_AVERAGE)

    @_translated("read the memory power (NVML_FI_DEV_POWER_AVERAGE, memory scope)")
    def memory_power(self) -> FieldReading:
        """Memory power averaged over the last second, mW (0 is treated as not supported)."""
        reading = self._field(pynvml.NVML_FI_DEV_POWER_AVERAGE, _POWER_SCOPE_MEMORY)
        if reading.power_mw <= 0:  # GPUs without a memory rail answer 0 rather than an error
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return reading

    @_translated("read the enforced power limit")
    def power_limit_mw(self) -> int:
        """The enforced power limit, mW."""
        return int(pynvml.nvmlDeviceGetEnforcedPowerLimit(self._handle))

    @_translated("read the clocks")
    def clocks_mhz(self) -> tuple[int, int]:
        """Current (SM, memory) clocks, MHz."""
        sm = pynvml.nvmlDeviceGetClockInfo(self._handle, pynvml.NVML_CLOCK_SM)
        mem = pynvml.nvmlDeviceGetClockInfo(self._handle, pynvml.NVML_CLOCK_MEM)
        return int(sm), int(mem)

    @_translated("read the temperature")
    def temperature_c(self) -> int:
        """GPU die temperature, °C (``nvmlDeviceGetTemperatureV``, older drivers: the v1 call)."""
        newer = getattr(pynvml, "nvmlDeviceGetTemperatureV", None)  # nvidia-ml-py >= 12.560
        if newer is not None:
            try:
                return int(newer(self._handle, pynvml.NVML_TEMPERATURE_GPU))
            except (pynvml.NVMLError_FunctionNotFound, pynvml.NVMLError_ArgumentVersionMismatch):
                pass  # a driver without the versioned call: use the v1 one
        return int(pynvml.nvmlDeviceGetTemperature(self._handle, pynvml.NVML_TEMPERATURE_GPU))

    @_translated("read the clock-event reasons")
    def clock_event_reasons(self) -> int:
        """Current clock-event reasons bitmask (older drivers: the "throttle reasons" call)."""
        newer = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if newer is not None:
            try:
                return int(newer(self._handle))
            except pynvml.NVMLError_FunctionNotFound:
                pass  # a driver from before the rename
        return int(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(self._handle))

    @_translated("read the utilization")
    def utilization_pct(self) -> tuple[int, int]:
        """(GPU, memory) utilization, percent (not supported with MIG enabled)."""
        util = pynvml.nvmlDeviceGetUtilizationRates(self._handle)
        return int(util.gpu), int(util.memory)

    def reconnect(self) -> None:
        """Resolve the handle again by UUID; re-initialise NVML if the driver was reloaded."""
        generation = self._library.generation
        try:
            handle = nvml_call("find the GPU again", pynvml.nvmlDeviceGetHandleByUUID, self._uuid)
        except GpuLostError:
            self._library.reinitialise(generation)
            handle = nvml_call("find the GPU again", pynvml.nvmlDeviceGetHandleByUUID, self._uuid)
        self._handle = handle
        self.energy_mj()  # proves the GPU answers again (raises GpuLostError if not)

    @property
    def _uuid(self) -> str:
        return self._identity.uuid


@dataclass(frozen=True)
class NvmlVersions:
    """Driver-side versions, as strings (``580.159.04``, ``13.580.159.04``, ``13.0``)."""

    driver: str
    nvml: str
    cuda_driver: str


class NvmlLibrary:
    """NVML, initialised while open (``nvmlInit``/``nvmlShutdown``, refcounted by NVML).

    Not a singleton: each owner opens its own (a meter, ``infergy doctor``, a benchmark).
    """

    def __init__(self) -> None:
        self._open = False
        self._lock = threading.Lock()
        self.generation = 0
        """Bumped on every re-initialisation, so concurrent reconnects re-init once."""

    def open(self) -> NvmlLibrary:
        """Initialise NVML; raises ``GpuError`` (with a hint) when the driver is absent."""
        if not self._open:
            nvml_call("initialise NVML", pynvml.nvmlInit)
            self._open = True
        return self

    def close(self) -> None:
        """Shut NVML down (errors at shutdown are ignored: there is nothing left to do)."""
        if self._open:
            self._open = False
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()

    def __enter__(self) -> NvmlLibrary:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reinitialise(self, seen_generation: int) -> None:
        """Shut down and initialise again (after a driver reload), once per generation."""
        with self._lock:
            if self.generation != seen_generation:
                return  # another GPU's reconnect already did it
            self.generation += 1
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()
            nvml_call("initialise NVML again", pynvml.nvmlInit)

    def versions(self) -> NvmlVersions:
        """Driver, NVML and CUDA driver versions."""
        cuda = nvml_call("read the CUDA driver version", pynvml.nvmlSystemGetCudaDriverVersion)
        return NvmlVersions(
            driver=_text(nvml_call("read the driver version", pynvml.nvmlSystemGetDriverVersion)),
            nvml=_text(nvml_call("read the NVML version", pynvml.nvmlSystemGetNVMLVersion)),
            cuda_driver=f"{int(cuda) // 1000}.{int(cuda) % 1000 // 10}",
        )

    def all_gpus(self) -> list[NvmlGpu]:
        """Every GPU NVML sees, by NVML index (``CUDA_VISIBLE_DEVICES`` not applied)."""
        count = int(nvml_call("count the GPUs", pynvml.nvmlDeviceGetCount))
        return [self._gpu(i) for i in range(count)]

    def visible_gpus(self, env: Mapping[str, str] | None = None) -> tuple[list[NvmlGpu], list[str]]:
        """The GPUs ``CUDA_VISIBLE_DEVICES`` leaves visible, in NVML index order, with notes.

        Args:
            env: the environment to read ``CUDA_VISIBLE_DEVICES`` from (default: os.environ).
        """
        visible = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
        gpus = self.all_gpus()
        selection = select_visible_gpus(
            [g.identity.uuid for g in gpus], visible, self._mig_parent_uuid
        )
        chosen = []
        for i in selection.indices:
            gpu = gpus[i]
            migs = tuple(selection.mig_instances.get(i, ()))
            if migs:
                gpu = NvmlGpu(self, gpu.handle, replace(gpu.identity, mig_instances=migs))
            chosen.append(gpu)
        return chosen, selection.notes

    def _gpu(self, index: int) -> NvmlGpu:
        handle = nvml_call("open a GPU", pynvml.nvmlDeviceGetHandleByIndex, index)
        try:
            current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
            mig: bool | None = int(current) == pynvml.NVML_DEVICE_MIG_ENABLE
        except pynvml.NVMLError:  # not a MIG-capable GPU (or not supported): unknown
            mig = None
        pci = nvml_call("read the PCI info", pynvml.nvmlDeviceGetPciInfo, handle)
        identity = GpuIdentity(
            index=index,
            uuid=_text(nvml_call("read the UUID", pynvml.nvmlDeviceGetUUID, handle)),
            name=_text(nvml_call("read the name", pynvml.nvmlDeviceGetName, handle)),
            pci_bus_id=_text(pci.busId),
            mig_enabled=mig,
        )
        return NvmlGpu(self, handle, identity)

    def _mig_parent_uuid(self, mig_uuid: str) -> str | None:
        try:
            mig = pynvml.nvmlDeviceGetHandleByUUID(mig_uuid)
            parent = pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
            return _text(pynvml.nvmlDeviceGetUUID(parent))
        except pynvml.NVMLError:
            return None
