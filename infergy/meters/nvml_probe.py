"""What one GPU can give the NVML meter, and how fast: probing, calibration, source layout.

:func:`probe_gpu` tries each read-only signal once (energy counter, power sample buffer, the two
power field values, the context calls), records ok or why not, and measures the counter's own
update period by reading it until it changed a few times. :func:`source_specs` turns that into
the GPU's sources (naming contract)::

    gpu<i>          the best energy signal: the energy counter (``counter``, J); without a
                    counter (pre-Volta) the next best below, under this name too
    gpu<i>.samples  the driver's power sample buffer (``instant``, 20 ms on Hopper); without a
                    buffer NVML_FI_DEV_POWER_INSTANT polled every 0.1 s (``instant``)
    gpu<i>.avg      NVML_FI_DEV_POWER_AVERAGE polled every 1 s (``interval_mean``, 1 s): what
                    ``nvidia-smi`` shows as power.draw on Ampere and later; for comparison

``<i>`` counts the visible GPUs in NVML index order. Only ``gpu<i>`` enters sums (``gpus``).
``infergy doctor`` shows the same probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from infergy.core.clock import SessionClock
from infergy.core.trace import NS_PER_S, Semantics
from infergy.errors import GpuError, GpuLostError, GpuNotSupportedError, GpuPermissionError
from infergy.meters.base import SourceInfo
from infergy.meters.gpu import (
    FieldReading,
    GpuDevice,
    GpuIdentity,
    PowerSamples,
    clock_event_names,
)

AVERAGE_WINDOW_S = 1.0
"""NVML_FI_DEV_POWER_AVERAGE averages over 1 s; it is polled at that period (interval_mean)."""


@dataclass(frozen=True)
class NvmlMeterConfig:
    """Sampling rates and failure policy of the NVML meter (defaults per MEASUREMENT.md).

    Attributes:
        counter_poll_factor: poll the energy counter every ``factor`` x its measured update
            period (1: at its own period) where it is read densely.
        counter_sparse_interval_s: where no dense span is asked for, read the counter only
            about this often (rounded to whole update periods), the 20-ms samples giving the
            shape in between (:mod:`infergy.core.anchored`); 0 reads it densely all the time.
            Only with a sample buffer: without one the counter is always read densely.
        counter_dense_span_s: how long :meth:`NvmlMeter.dense_counter` reads densely by default
            (around a window's edges).
        counter_min_interval_s: never poll the counter faster than this.
        counter_default_period_s: the update period assumed when measuring it fails.
        calibration_changes: counter changes to see when measuring its update period.
        calibration_timeout_s: give up measuring after this long.
        calibration_pause_s: pause between reads while measuring or re-synchronising.
        counter_resync_s: how often the counter's update phase is re-measured (a few reads
            around one update; keeps the mid-period reads mid-period).
        samples_read_interval_s: batch period of the driver's power sample buffer (capped at
            40% of the buffer's depth, measured at open).
        instant_poll_interval_s: polling of NVML_FI_DEV_POWER_INSTANT (only without a buffer).
        context_interval_s: period of the context reads.
        call_timeout_s: a tick slower than this marks the GPU's sources down until it returns.
        recovery_initial_s: first wait before reconnecting a lost GPU (doubles each try).
        recovery_max_s: the longest wait between reconnection tries.
        context_capacity: samples kept per context series.
    """

    counter_poll_factor: float = 1.0
    counter_sparse_interval_s: float = 0.0
    counter_dense_span_s: float = 0.5
    counter_min_interval_s: float = 0.02
    counter_default_period_s: float = 0.1
    calibration_changes: int = 5
    calibration_timeout_s: float = 2.0
    calibration_pause_s: float = 0.002
    counter_resync_s: float = 30.0
    samples_read_interval_s: float = 0.5
    instant_poll_interval_s: float = 0.1
    context_interval_s: float = 1.0
    call_timeout_s: float = 2.0
    recovery_initial_s: float = 0.5
    recovery_max_s: float = 30.0
    context_capacity: int = 1 << 14


CONTEXT_METRICS = (
    "power_limit_w",
    "sm_clock_mhz",
    "memory_clock_mhz",
    "temperature_c",
    "clock_event_reasons",
    "gpu_utilization_pct",
    "memory_utilization_pct",
    "memory_power_w",
)
"""The context series kept per GPU (``NvmlMeter.context_arrays``), from the context calls:
``power_limit``, ``clocks``, ``temperature``, ``clock_events``, ``utilization``,
``memory_power``."""


@dataclass
class GpuCapabilities:
    """What :func:`probe_gpu` found on one GPU.

    Attributes:
        status: per signal (``counter``, ``samples``, ``instant``, ``average``, each context
            call): ``ok...`` or why it is not used.
        intervals_s: the signals to read (``counter``, ``samples`` or ``instant``, ``average``,
            ``context``) and how often, seconds.
        context_calls: the context calls that work.
        counter_period_s: the energy counter's measured update period.
        sample_period_s: the spacing of the driver's power samples (or the instant polling).
        first_values: one reading of each working signal, for people (``infergy doctor``).
    """

    status: dict[str, str] = field(default_factory=dict)
    intervals_s: dict[str, float] = field(default_factory=dict)
    context_calls: list[str] = field(default_factory=list)
    counter_period_s: float = 0.1
    sample_period_s: float = 0.02
    first_values: dict[str, str] = field(default_factory=dict)


_FAILED = object()


def probe_gpu(
    gpu: GpuDevice, config: NvmlMeterConfig, *, calibrate: bool = True
) -> GpuCapabilities:
    """Try every signal once (read-only) and measure the counter's update period (blocking).

    Raises:
        GpuLostError: the GPU does not answer at all.
    """
    caps = GpuCapabilities(counter_period_s=config.counter_default_period_s)
    if _try(caps, "counter", gpu.energy_mj) is not _FAILED:
        if calibrate:
            caps.counter_period_s = measure_counter_period(gpu, config, caps.status)
        interval = max(caps.counter_period_s * config.counter_poll_factor,
                       config.counter_min_interval_s)  # fmt: skip
        caps.intervals_s["counter"] = interval
        caps.status["counter"] = (
            f"ok: updates every {caps.counter_period_s * 1e3:.0f} ms, "
            f"read every {interval * 1e3:.0f} ms"
        )
        if config.counter_sparse_interval_s > 0:
            caps.status["counter"] += (
                f" around window edges, every ~{config.counter_sparse_interval_s:g} s otherwise "
                "(with a sample buffer)"
            )
    batch = _try(caps, "samples", lambda: gpu.power_samples(0))
    if isinstance(batch, PowerSamples):
        read_s = config.samples_read_interval_s
        if len(batch) >= 2:
            t_us = batch.t_wall_us
            caps.sample_period_s = float(np.median(np.diff(t_us))) / 1e6
            read_s = min(read_s, max(0.05, 0.4 * float(t_us[-1] - t_us[0]) / 1e6))
            caps.first_values["samples"] = (
                f"{len(batch)} buffered, last {batch.power_mw[-1] / 1e3:.1f} W"
            )
        caps.intervals_s["samples"] = read_s
        caps.status["samples"] = (
            f"ok: a sample every {caps.sample_period_s * 1e3:.0f} ms, "
            f"read every {read_s * 1e3:.0f} ms"
        )
    instant_ok = _try(caps, "instant", gpu.power_instant) is not _FAILED
    if instant_ok and "samples" not in caps.intervals_s:  # the fallback timeline
        caps.intervals_s["instant"] = config.instant_poll_interval_s
        caps.sample_period_s = config.instant_poll_interval_s
    if _try(caps, "average", gpu.power_average) is not _FAILED:
        caps.intervals_s["average"] = AVERAGE_WINDOW_S
    calls: dict[str, Callable[[], object]] = {
        "power_limit": gpu.power_limit_mw,
        "clocks": gpu.clocks_mhz,
        "temperature": gpu.temperature_c,
        "clock_events": gpu.clock_event_reasons,
        "utilization": gpu.utilization_pct,
        "memory_power": gpu.memory_power,
    }
    caps.context_calls = [n for n, fn in calls.items() if _try(caps, n, fn) is not _FAILED]
    if caps.context_calls:
        caps.intervals_s["context"] = config.context_interval_s
    return caps


def _try(caps: GpuCapabilities, signal: str, read: Callable[[], object]) -> object:
    """One read of a signal: its value, or ``_FAILED`` with the reason in ``caps.status``."""
    try:
        value = read()
    except GpuLostError:
        raise
    except GpuNotSupportedError as err:
        caps.status[signal] = f"not supported ({err})"
        return _FAILED
    except GpuPermissionError as err:
        caps.status[signal] = f"no permission ({err})"
        return _FAILED
    except GpuError as err:
        caps.status[signal] = f"error: {err}"
        return _FAILED
    caps.status[signal] = "ok"
    if not isinstance(value, PowerSamples):
        caps.first_values[signal] = _for_people(signal, value)
    return value


def _for_people(signal: str, value: object) -> str:
    """One reading, with its unit (``312.5 W``, ``1980/2619 MHz``...)."""
    if isinstance(value, FieldReading):
        return f"{value.power_mw / 1e3:.1f} W"
    if signal == "counter":
        return f"{value} mJ"
    if signal == "power_limit" and isinstance(value, int):
        return f"{value / 1e3:.0f} W"
    if isinstance(value, tuple):
        unit = " MHz (SM/memory)" if signal == "clocks" else " % (GPU/memory)"
        return "/".join(map(str, value)) + unit
    if signal == "clock_events" and isinstance(value, int):
        return ", ".join(clock_event_names(value)) or "none"
    return f"{value} °C" if signal == "temperature" else str(value)


def measure_counter_period(
    gpu: GpuDevice, config: NvmlMeterConfig, notes: dict[str, str] | None = None
) -> float:
    """The energy counter's update period: read it until it changed a few times (blocking).

    Each change is placed midway between the read that still saw the old value and the one
    that saw the new; the period is the median spacing of the changes. Falls back to
    ``config.counter_default_period_s`` (with a note) when fewer than 3 changes are seen.
    """
    clock = SessionClock()
    deadline = time.monotonic() + config.calibration_timeout_s
    changes: list[int] = []
    last, prev_ns = gpu.energy_mj(), clock.now_ns()
    while len(changes) <= config.calibration_changes and time.monotonic() < deadline:
        time.sleep(config.calibration_pause_s)
        t0_ns = clock.now_ns()
        mj = gpu.energy_mj()
        mid_ns = (t0_ns + clock.now_ns()) // 2
        if mj != last:
            changes.append((prev_ns + mid_ns) // 2)
            last = mj
        prev_ns = mid_ns
    if len(changes) < 3:
        if notes is not None:
            notes["counter_period"] = (
                f"the counter changed {len(changes)} times in {config.calibration_timeout_s:g} s;"
                f" assuming it updates every {config.counter_default_period_s * 1e3:.0f} ms"
            )
        return config.counter_default_period_s
    rough_ns = float(np.median(np.diff(changes)))  # robust to one odd interval...
    periods = round((changes[-1] - changes[0]) / rough_ns)  # ...then the whole span's mean
    return (changes[-1] - changes[0]) / max(1, periods) / NS_PER_S


@dataclass(frozen=True)
class SourceSpec:
    """How one source of a GPU is stored and integrated.

    Attributes:
        buffer: the ring buffer behind it (``counter``, ``samples``, ``average``).
        semantics: how it integrates.
        nominal_period_ns: its update period.
        unit: ``J`` or ``W``.
        signal: what it is, for people.
    """

    buffer: str
    semantics: Semantics
    nominal_period_ns: int
    unit: str
    signal: str


def _ns(seconds: float) -> int:
    return max(1, round(seconds * NS_PER_S))


def source_specs(source: str, caps: GpuCapabilities) -> dict[str, SourceSpec]:
    """The GPU's sources by name (see the module docstring), from what the probe found."""
    have = caps.intervals_s.keys()
    samples = SourceSpec(
        "samples",
        Semantics.INSTANT,
        _ns(caps.sample_period_s),
        "W",
        "driver power sample buffer (nvmlDeviceGetSamples), instant"
        if "samples" in have
        else "NVML_FI_DEV_POWER_INSTANT polled every "
        f"{caps.sample_period_s * 1e3:.0f} ms (no sample buffer), instant",
    )
    average = SourceSpec(
        "average",
        Semantics.INTERVAL_MEAN,
        _ns(AVERAGE_WINDOW_S),
        "W",
        "NVML_FI_DEV_POWER_AVERAGE polled every 1 s: the mean over the second before each",
    )
    specs: dict[str, SourceSpec] = {}
    if "counter" in have:
        specs[source] = SourceSpec(
            "counter",
            Semantics.COUNTER,
            _ns(caps.counter_period_s),
            "J",
            "energy counter (nvmlDeviceGetTotalEnergyConsumption), cumulative joules",
        )
    elif {"samples", "instant"} & have:
        specs[source] = samples
    elif "average" in have:
        specs[source] = average
    if {"samples", "instant"} & have:
        specs[f"{source}.samples"] = samples
    if "average" in have:
        specs[f"{source}.avg"] = average
    return specs


def source_infos(
    specs: Mapping[str, SourceSpec], ident: GpuIdentity, caps: GpuCapabilities
) -> list[SourceInfo]:
    """The :class:`SourceInfo` of each of a GPU's sources, with identity, MIG and statuses."""
    mig = {True: "enabled", False: "disabled", None: "n/a"}[ident.mig_enabled]
    if ident.mig_enabled:
        mig += "; board power covers every MIG instance and is not split per instance"
    if ident.mig_instances:
        mig += f"; visible instances: {', '.join(ident.mig_instances)}"
    base = {"nvml_index": str(ident.index), "uuid": ident.uuid, "pci_bus_id": ident.pci_bus_id}
    base |= {"mig": mig} | {f"status.{k}": v for k, v in caps.status.items()}
    return [
        SourceInfo(
            name=name,
            kind="nvml",
            device=f"{ident.name} {ident.uuid}",
            semantics=spec.semantics,
            nominal_period_ns=spec.nominal_period_ns,
            unit=spec.unit,
            simulated=ident.simulated,
            details=base | {"signal": spec.signal},
        )
        for name, spec in specs.items()
    ]


def read_context(
    gpu: GpuDevice, calls: Sequence[str]
) -> tuple[dict[str, float], list[tuple[str, GpuError]], list[GpuError]]:
    """Make the context calls (blocking): the values by metric, what to drop, other errors.

    Raises:
        GpuLostError: the GPU is gone (everything else is returned).
    """
    values: dict[str, float] = {}
    dropped: list[tuple[str, GpuError]] = []
    errors: list[GpuError] = []
    for call in calls:
        try:
            if call == "power_limit":
                values["power_limit_w"] = gpu.power_limit_mw() / 1e3
            elif call == "clocks":
                values["sm_clock_mhz"], values["memory_clock_mhz"] = gpu.clocks_mhz()
            elif call == "temperature":
                values["temperature_c"] = gpu.temperature_c()
            elif call == "clock_events":
                values["clock_event_reasons"] = gpu.clock_event_reasons()
            elif call == "utilization":
                gpu_pct, memory_pct = gpu.utilization_pct()
                values["gpu_utilization_pct"], values["memory_utilization_pct"] = (
                    gpu_pct,
                    memory_pct,
                )
            else:
                values["memory_power_w"] = gpu.memory_power().power_mw / 1e3
        except (GpuNotSupportedError, GpuPermissionError) as err:
            dropped.append((call, err))
        except GpuLostError:
            raise
        except GpuError as err:
            errors.append(err)
    return values, dropped, errors
