"""NVML probes for bench/nvml_meter.py: call costs, update periods, counter read cost by phase.

Direct ``pynvml`` calls on one GPU, read-only, each result a JSON-ready dict.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pynvml


def call_costs(gpu: Any) -> dict[str, Any]:
    """Median wall / thread-CPU µs per call (each after 5 warm-up calls)."""
    h = gpu.handle
    f = pynvml
    last = {"us": 0}

    def samples_since_last() -> None:
        try:
            _, s = f.nvmlDeviceGetSamples(h, f.NVML_TOTAL_POWER_SAMPLES, last["us"])
            if s:
                last["us"] = s[-1].timeStamp
        except f.NVMLError_NotFound:
            pass

    calls: dict[str, tuple[Callable[[], object], int]] = {
        "nvmlDeviceGetPowerUsage": (lambda: f.nvmlDeviceGetPowerUsage(h), 500),
        "nvmlDeviceGetTemperature": (lambda: f.nvmlDeviceGetTemperature(h, 0), 500),
        "fields[POWER_INSTANT]": (
            lambda: f.nvmlDeviceGetFieldValues(h, [f.NVML_FI_DEV_POWER_INSTANT]),
            500,
        ),
        "fields[POWER_AVERAGE]": (
            lambda: f.nvmlDeviceGetFieldValues(h, [f.NVML_FI_DEV_POWER_AVERAGE]),
            500,
        ),
        "fields[POWER_AVERAGE, memory scope]": (
            lambda: f.nvmlDeviceGetFieldValues(
                h, [(f.NVML_FI_DEV_POWER_AVERAGE, f.NVML_POWER_SCOPE_MEMORY)]
            ),
            200,
        ),
        "nvmlDeviceGetSamples(power, since last)": (samples_since_last, 200),
        "nvmlDeviceGetSamples(power, whole buffer)": (
            lambda: f.nvmlDeviceGetSamples(h, f.NVML_TOTAL_POWER_SAMPLES, 0),
            50,
        ),
        "NvmlGpu.power_samples(whole buffer, decoded)": (lambda: gpu.power_samples(0), 50),
        "nvmlDeviceGetTotalEnergyConsumption": (
            lambda: f.nvmlDeviceGetTotalEnergyConsumption(h),
            100,
        ),
        "fields[ENERGY]": (lambda: f.nvmlDeviceGetFieldValues(h, [f.NVML_FI_DEV_ENERGY]), 50),
        "nvmlDeviceGetEnforcedPowerLimit": (lambda: f.nvmlDeviceGetEnforcedPowerLimit(h), 200),
        "nvmlDeviceGetClockInfo(SM)": (lambda: f.nvmlDeviceGetClockInfo(h, f.NVML_CLOCK_SM), 200),
        "nvmlDeviceGetCurrentClocksEventReasons": (gpu.clock_event_reasons, 200),
        "nvmlDeviceGetUtilizationRates": (lambda: f.nvmlDeviceGetUtilizationRates(h), 200),
    }
    out: dict[str, Any] = {}
    for name, (call, n) in calls.items():
        try:
            for _ in range(5):
                call()
            wall, cpu = [], []
            for _ in range(n):
                w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                call()
                cpu.append(time.thread_time_ns() - c0)
                wall.append(time.perf_counter_ns() - w0)
            out[name] = {
                "calls": n,
                "wall_us_median": statistics.median(wall) / 1e3,
                "wall_us_p90": float(np.percentile(wall, 90)) / 1e3,
                "thread_cpu_us_median": statistics.median(cpu) / 1e3,
            }
        except Exception as err:  # a call this GPU does not support: say so, go on
            out[name] = {"error": f"{type(err).__name__}: {err}"}
    return out


def _change_intervals(
    read: Callable[[], object], seconds: float, pause_s: float, changes: int
) -> dict[str, Any]:
    """Poll ``read`` until it changed ``changes`` times (or ``seconds``): spacing of the changes."""
    t_changes: list[float] = []
    prev_val, prev_t = read(), time.perf_counter()
    deadline = prev_t + seconds
    while len(t_changes) <= changes and time.perf_counter() < deadline:
        if pause_s:
            time.sleep(pause_s)
        t0 = time.perf_counter()
        val = read()
        mid = (t0 + time.perf_counter()) / 2
        if val != prev_val:
            t_changes.append((prev_t + mid) / 2)
            prev_val = val
        prev_t = mid
    d = np.diff(t_changes) * 1e3
    if d.size == 0:
        return {"changes": len(t_changes), "note": "no change seen"}
    return {
        "changes": len(t_changes),
        "period_ms_median": float(np.median(d)),
        "period_ms_p10": float(np.percentile(d, 10)),
        "period_ms_p90": float(np.percentile(d, 90)),
    }


def update_periods(gpu: Any) -> dict[str, Any]:
    h, f = gpu.handle, pynvml
    out: dict[str, Any] = {}
    out["energy_counter"] = _change_intervals(
        lambda: f.nvmlDeviceGetTotalEnergyConsumption(h), 5.0, 0.0, 25
    )
    first = gpu.power_samples(0)
    span = (first.t_wall_us[-1] - first.t_wall_us[0]) / 1e3 if len(first) > 1 else 0.0
    time.sleep(3.0)
    later = gpu.power_samples(int(first.t_wall_us[-1]) if len(first) else 0)
    t = np.concatenate([first.t_wall_us, later.t_wall_us])
    d = np.diff(t) / 1e3
    out["power_samples"] = {
        "buffer_samples": len(first),
        "buffer_span_ms": float(span),
        "period_ms_median": float(np.median(d)) if d.size else None,
        "period_ms_p99": float(np.percentile(d, 99)) if d.size else None,
        "new_in_3_s": len(later),
    }

    def field(fid: int) -> Callable[[], object]:
        return lambda: f.nvmlDeviceGetFieldValues(h, [fid])[0].value.uiVal

    out["field_power_instant"] = _change_intervals(
        field(f.NVML_FI_DEV_POWER_INSTANT), 3.0, 0.002, 25
    )
    out["field_power_average"] = _change_intervals(
        field(f.NVML_FI_DEV_POWER_AVERAGE), 3.0, 0.002, 25
    )
    out["power_usage"] = _change_intervals(lambda: f.nvmlDeviceGetPowerUsage(h), 3.0, 0.002, 25)
    return out


def counter_cost_by_phase(gpu: Any, reads_per_offset: int = 8) -> dict[str, Any]:
    """CPU and wall µs of one energy-counter read, by where it lands after a counter update."""
    h, f = gpu.handle, pynvml

    def energy() -> int:
        return int(f.nvmlDeviceGetTotalEnergyConsumption(h))

    def update_instant() -> float:
        prev, prev_t = energy(), time.perf_counter()
        while True:
            t0 = time.perf_counter()
            v = energy()
            mid = (t0 + time.perf_counter()) / 2
            if v != prev:
                return (prev_t + mid) / 2
            prev, prev_t = v, mid

    u0 = update_instant()
    time.sleep(1.0)
    u1 = update_instant()
    period = (u1 - u0) / max(1, round((u1 - u0) / 0.1))
    out: dict[str, Any] = {"period_ms": period * 1e3}
    for offset_ms in (1, 5, 10, 25, 50, 75, 90):
        u = update_instant()
        cpu, wall = [], []
        for k in range(1, reads_per_offset + 1):
            target = u + k * period + offset_ms / 1e3
            time.sleep(max(0.0, target - time.perf_counter() - 0.002))
            while time.perf_counter() < target:
                pass
            w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            energy()
            cpu.append((time.thread_time_ns() - c0) / 1e3)
            wall.append((time.perf_counter_ns() - w0) / 1e3)
        out[f"{offset_ms}_ms_after_update"] = {
            "cpu_us_median": statistics.median(cpu),
            "wall_us_median": statistics.median(wall),
        }
    return out
