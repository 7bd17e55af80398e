"""A physically shaped model of a GPU under an inference load: power and throughput vs settings.

Pure functions, no I/O, no clock reads. Everything it computes is SIMULATED. Board power is

    P = static + c * f * V(f)^2 * a_sm + P_mem(mem clock, a_mem)

with ``V(f)`` flat at a floor voltage up to a knee clock, then rising linearly to the maximum
voltage at the top clock (what DVFS tables look like), ``a_sm`` the SMs' activity and ``a_mem``
the memory's. A power cap lowers the SM clock until the steady-state power fits (the driver
dithers between discrete clocks; the model solves for the continuous average). A locked clock
range bounds it; the cap still wins, as on real boards. Throughput follows the clock until the
memory bandwidth binds: ``rate = min(compute_rate * f/f_max * occupancy, mem_rate * mem/mem_max)``.

A batch costs a fixed host/launch overhead (SMs idle) plus ``batch / rate``; small batches also
fill the SMs only partly. Per-sample traffic grows slowly with the batch (activations leave the
cache), so memory binds at large batches and high clocks. fp32 runs slower per sample and moves
twice the bytes. So samples per joule rise and saturate with the batch and peak at a clock
between the voltage knee and the top: a sweep over the model has a knee and an optimum.

Parameter sets (:data:`PARTS`): ``h200`` fitted to the lent H200 (ResNet-50 fp16 batch 256 at
default settings about 16,800 images/s at about 675 W; idle 81 W at 345 MHz, memory 41 W; limits
200-700 W; SM 345-1980 MHz in 15-MHz steps; memory 3201 and 2201 MHz, all read with
nvidia-smi). ``t4``, ``l4`` and ``a2`` use their published TDPs, limit ranges and clocks; their
throughputs are of the right order, not fitted to a measurement. The generative workload's
rates (``llm_*``, :mod:`infergy.core.gpu_llm`) come from each part's published tensor FLOP/s and
memory bandwidth at realistic efficiencies, not from a measurement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BISECTION_STEPS = 60
"""Enough for the clock solve to reach well below 1e-9 MHz over any clock range."""


@dataclass(frozen=True)
class PrecisionCost:
    """How a numeric precision changes the work, relative to fp16.

    Attributes:
        compute: relative peak samples/s of the SMs (fp32 has no fp16 tensor-core rate).
        traffic: relative bytes moved per sample.
        power: relative dynamic power per unit of SM activity.
    """

    compute: float
    traffic: float
    power: float


PRECISIONS: dict[str, PrecisionCost] = {
    "fp32": PrecisionCost(compute=0.36, traffic=2.0, power=1.05),
    "fp16": PrecisionCost(compute=1.0, traffic=1.0, power=1.0),
    "bf16": PrecisionCost(compute=1.0, traffic=1.0, power=1.0),
    "int8": PrecisionCost(compute=1.7, traffic=0.5, power=0.92),
}


@dataclass(frozen=True)
class GpuPart:
    """The parameters of one GPU model (all SIMULATED).

    Attributes:
        key: short name (``h200``).
        name: product name as NVML reports it, with ``(SIMULATED)``.
        min_power_limit_w: lowest settable power limit.
        max_power_limit_w: highest settable power limit.
        default_power_limit_w: the board's default limit.
        sm_clocks_mhz: supported SM clocks, highest first (NVML's order).
        mem_clocks_mhz: supported memory clocks, highest first.
        idle_sm_clock_mhz: the SM clock with nothing running.
        static_w: power with the SMs clock-gated and no memory traffic, minus the memory's share.
        voltage_floor_v: core voltage up to ``voltage_knee_mhz``.
        voltage_max_v: core voltage at the top SM clock.
        voltage_knee_mhz: the clock above which the voltage rises.
        dynamic_w_per_mhz_v2: SM dynamic power per MHz per V^2 at full activity.
        mem_max_w: memory power at the top memory clock with the bandwidth saturated.
        mem_idle_fraction: share of ``mem_max_w`` drawn with no traffic (refresh, I/O, PHY).
        compute_rate_hz: samples/s at the top SM clock, fp16, SMs fully occupied.
        mem_rate_hz: samples/s the bandwidth allows at the top memory clock, fp16.
        batch_overhead_s: host and launch time per batch, SMs idle.
        half_occupancy_batch: the batch that fills half the SMs.
        spill_batch: per-sample traffic is ``1 + batch / spill_batch`` times the base.
        stall_power_fraction: share of dynamic power an SM draws while stalled on memory.
        supports_mem_lock: whether memory clocks can be locked (Ampere and newer).
        memory_bytes: device memory (the generative workload's memory plan).
        llm_flops_per_s: dense fp16/bf16 matrix FLOP/s a transformer reaches at the top SM
            clock (prefill; :mod:`infergy.core.gpu_llm`), 0: not modelled.
        llm_bytes_per_s: memory bandwidth a decode step reaches at the top memory clock.
        llm_step_overhead_s: host and launch time of one prefill or decode step (graphs).
    """

    key: str
    name: str
    min_power_limit_w: float
    max_power_limit_w: float
    default_power_limit_w: float
    sm_clocks_mhz: tuple[int, ...]
    mem_clocks_mhz: tuple[int, ...]
    idle_sm_clock_mhz: int
    static_w: float
    voltage_floor_v: float
    voltage_max_v: float
    voltage_knee_mhz: float
    dynamic_w_per_mhz_v2: float
    mem_max_w: float
    mem_idle_fraction: float
    compute_rate_hz: float
    mem_rate_hz: float
    batch_overhead_s: float = 0.4e-3
    half_occupancy_batch: float = 6.0
    spill_batch: float = 1024.0
    stall_power_fraction: float = 0.35
    supports_mem_lock: bool = True
    memory_bytes: int = 0
    llm_flops_per_s: float = 0.0
    llm_bytes_per_s: float = 0.0
    llm_step_overhead_s: float = 0.25e-3

    @property
    def max_sm_clock_mhz(self) -> int:
        """The top supported SM clock."""
        return self.sm_clocks_mhz[0]

    @property
    def min_sm_clock_mhz(self) -> int:
        """The lowest supported SM clock."""
        return self.sm_clocks_mhz[-1]

    def voltage_v(self, sm_clock_mhz: float) -> float:
        """Core voltage at an SM clock: the floor, then linear up to the maximum."""
        if sm_clock_mhz <= self.voltage_knee_mhz:
            return self.voltage_floor_v
        span = self.max_sm_clock_mhz - self.voltage_knee_mhz
        rise = (sm_clock_mhz - self.voltage_knee_mhz) / span
        return self.voltage_floor_v + (self.voltage_max_v - self.voltage_floor_v) * rise


@dataclass(frozen=True)
class ModelSettings:
    """The settings the model responds to (None: unlocked).

    Attributes:
        power_limit_w: the enforced power limit.
        sm_lock_mhz: locked SM clock range, or None.
        mem_lock_mhz: locked memory clock range, or None.
    """

    power_limit_w: float
    sm_lock_mhz: tuple[int, int] | None = None
    mem_lock_mhz: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"power_limit_w": 700.0, "sm_lock_mhz": [1200, 1200], "mem_lock_mhz": null}``."""
        return {
            "power_limit_w": self.power_limit_w,
            "sm_lock_mhz": None if self.sm_lock_mhz is None else list(self.sm_lock_mhz),
            "mem_lock_mhz": None if self.mem_lock_mhz is None else list(self.mem_lock_mhz),
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ModelSettings:
        """Inverse of :meth:`to_json`.

        Raises:
            KeyError, TypeError, ValueError: not such an object.
        """
        return cls(
            float(body["power_limit_w"]), _lock(body["sm_lock_mhz"]), _lock(body["mem_lock_mhz"])
        )


def _lock(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    lo, hi = value
    return int(lo), int(hi)


@dataclass(frozen=True)
class OperatingPoint:
    """The steady state of the model under one load and settings (SIMULATED).

    Attributes:
        sm_clock_mhz: the SM clock (the average the driver settles at).
        mem_clock_mhz: the memory clock.
        power_w: board power.
        samples_per_second: throughput (0 when idle).
        batch_latency_s: time per batch (0 when idle).
        sm_activity: the SMs' power-weighted activity, 0-1.
        mem_activity: fraction of the memory bandwidth in use, 0-1.
        power_capped: True when the power limit held the clock below the allowed maximum.
        over_limit: True when even the lowest allowed clock draws more than the limit.
        simulated: always True.
    """

    sm_clock_mhz: float
    mem_clock_mhz: int
    power_w: float
    samples_per_second: float
    batch_latency_s: float
    sm_activity: float
    mem_activity: float
    power_capped: bool = False
    over_limit: bool = False
    simulated: bool = True

    @property
    def samples_per_joule(self) -> float:
        """Samples per joule (= samples/s per watt)."""
        return self.samples_per_second / self.power_w


def memory_clock_mhz(part: GpuPart, mem_lock_mhz: tuple[int, int] | None) -> int:
    """The memory clock a lock leads to: the highest supported one inside it (else the lowest)."""
    if mem_lock_mhz is None:
        return part.mem_clocks_mhz[0]
    lo, hi = mem_lock_mhz
    inside = [m for m in part.mem_clocks_mhz if lo <= m <= hi]
    return max(inside) if inside else min(part.mem_clocks_mhz, key=lambda m: abs(m - hi))


def _loaded(
    part: GpuPart, sm_clock_mhz: float, mem_clock_mhz: int, batch_size: int, cost: PrecisionCost
) -> OperatingPoint:
    """The steady state at a given SM clock (no power cap applied)."""
    occupancy = batch_size / (batch_size + part.half_occupancy_batch)
    traffic = cost.traffic * (1.0 + batch_size / part.spill_batch)
    peak_hz = part.compute_rate_hz * cost.compute * sm_clock_mhz / part.max_sm_clock_mhz
    mem_cap_hz = part.mem_rate_hz * (mem_clock_mhz / part.mem_clocks_mhz[0]) / traffic
    rate_hz = min(peak_hz * occupancy, mem_cap_hz)
    busy_s = batch_size / rate_hz
    batch_s = part.batch_overhead_s + busy_s
    busy = busy_s / batch_s
    working = rate_hz / peak_hz  # share of SM cycles doing work (<= occupancy)
    stalled = occupancy - working  # occupied but waiting on memory
    sm_activity = busy * (working + part.stall_power_fraction * stalled) * cost.power
    mem_activity = busy * rate_hz / mem_cap_hz
    volts = part.voltage_v(sm_clock_mhz)
    dynamic_w = part.dynamic_w_per_mhz_v2 * sm_clock_mhz * volts * volts * sm_activity
    return OperatingPoint(
        sm_clock_mhz=sm_clock_mhz,
        mem_clock_mhz=mem_clock_mhz,
        power_w=part.static_w + dynamic_w + _memory_w(part, mem_clock_mhz, mem_activity),
        samples_per_second=batch_size / batch_s,
        batch_latency_s=batch_s,
        sm_activity=sm_activity,
        mem_activity=mem_activity,
    )


def _memory_w(part: GpuPart, mem_clock_mhz: int, mem_activity: float) -> float:
    return memory_power_w(part, mem_clock_mhz, mem_activity)


def memory_power_w(part: GpuPart, mem_clock_mhz: int, mem_activity: float) -> float:
    """Memory power at a memory clock and a share of the bandwidth in use (0-1)."""
    scale = mem_clock_mhz / part.mem_clocks_mhz[0]
    share = part.mem_idle_fraction + (1.0 - part.mem_idle_fraction) * mem_activity
    return part.mem_max_w * scale * share


def steady_state(
    part: GpuPart, settings: ModelSettings, *, batch_size: int, precision: str = "fp16"
) -> OperatingPoint:
    """Power, clock and throughput under a continuous load of ``batch_size`` batches.

    Raises:
        ValueError: for a batch size below 1 or an unknown precision (a programming error:
            callers validate user input first).
    """
    if batch_size < 1:
        msg = f"batch size must be >= 1, got {batch_size}"
        raise ValueError(msg)
    if precision not in PRECISIONS:
        msg = f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}"
        raise ValueError(msg)
    cost = PRECISIONS[precision]
    mem = memory_clock_mhz(part, settings.mem_lock_mhz)
    lo = float(part.min_sm_clock_mhz)
    hi = float(part.max_sm_clock_mhz)
    if settings.sm_lock_mhz is not None:
        hi = min(hi, max(lo, float(settings.sm_lock_mhz[1])))
    top = _loaded(part, hi, mem, batch_size, cost)
    if top.power_w <= settings.power_limit_w:
        return top
    bottom = _loaded(part, lo, mem, batch_size, cost)
    if bottom.power_w > settings.power_limit_w:
        return _flagged(bottom, over_limit=True)
    # Power rises monotonically with the clock (tested), so bisection finds the cap's clock.
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if _loaded(part, mid, mem, batch_size, cost).power_w <= settings.power_limit_w:
            lo = mid
        else:
            hi = mid
    return _flagged(_loaded(part, lo, mem, batch_size, cost), over_limit=False)


def at_clock(
    part: GpuPart,
    sm_clock_mhz: float,
    *,
    mem_clock_mhz: int | None = None,
    batch_size: int,
    precision: str = "fp16",
) -> OperatingPoint:
    """The steady state at a given SM clock, no power cap applied (default: top memory clock)."""
    mem = part.mem_clocks_mhz[0] if mem_clock_mhz is None else mem_clock_mhz
    return _loaded(part, sm_clock_mhz, mem, batch_size, PRECISIONS[precision])


def _flagged(point: OperatingPoint, *, over_limit: bool) -> OperatingPoint:
    return OperatingPoint(
        sm_clock_mhz=point.sm_clock_mhz,
        mem_clock_mhz=point.mem_clock_mhz,
        power_w=point.power_w,
        samples_per_second=point.samples_per_second,
        batch_latency_s=point.batch_latency_s,
        sm_activity=point.sm_activity,
        mem_activity=point.mem_activity,
        power_capped=True,
        over_limit=over_limit,
    )


def idle_state(part: GpuPart, settings: ModelSettings) -> OperatingPoint:
    """Nothing running: the idle SM clock (or a locked minimum above it), SMs gated."""
    mem = memory_clock_mhz(part, settings.mem_lock_mhz)
    sm = float(part.idle_sm_clock_mhz)
    if settings.sm_lock_mhz is not None:
        sm = max(sm, float(settings.sm_lock_mhz[0]))
    return OperatingPoint(
        sm_clock_mhz=sm,
        mem_clock_mhz=mem,
        power_w=part.static_w + _memory_w(part, mem, 0.0),
        samples_per_second=0.0,
        batch_latency_s=0.0,
        sm_activity=0.0,
        mem_activity=0.0,
    )


def _clocks(top_mhz: int, bottom_mhz: int, step_mhz: int = 15) -> tuple[int, ...]:
    """NVML's supported SM clock list: top to bottom in 15-MHz steps."""
    return tuple(range(top_mhz, bottom_mhz - 1, -step_mhz))


H200 = GpuPart(
    key="h200",
    name="NVIDIA H200 (SIMULATED)",
    min_power_limit_w=200.0,
    max_power_limit_w=700.0,
    default_power_limit_w=700.0,
    sm_clocks_mhz=_clocks(1980, 345),
    mem_clocks_mhz=(3201, 2201),
    idle_sm_clock_mhz=345,
    static_w=40.0,  # idle 81 W = 40 W + 41 W of memory (nvidia-smi on the lent H200)
    voltage_floor_v=0.80,
    voltage_max_v=1.0,
    voltage_knee_mhz=1300.0,
    dynamic_w_per_mhz_v2=0.2881,  # fitted: 675 W at 1980 MHz, ResNet-50 fp16 batch 256
    mem_max_w=110.0,
    mem_idle_fraction=0.37,
    compute_rate_hz=17660.0,  # fitted: 16,800 images/s at the default settings
    mem_rate_hz=28250.0,
    memory_bytes=141 * 2**30,
    # published: dense bf16 989 TFLOP/s (taken at ~55 %), 4.8 TB/s (at ~85 %)
    llm_flops_per_s=540e12,
    llm_bytes_per_s=4.1e12,
)
T4 = GpuPart(
    key="t4",
    name="Tesla T4 (SIMULATED)",
    min_power_limit_w=60.0,
    max_power_limit_w=70.0,
    default_power_limit_w=70.0,
    sm_clocks_mhz=_clocks(1590, 300),
    mem_clocks_mhz=(5001,),
    idle_sm_clock_mhz=300,
    static_w=8.0,
    voltage_floor_v=0.70,
    voltage_max_v=1.0,
    voltage_knee_mhz=800.0,
    dynamic_w_per_mhz_v2=0.04535,  # about 95 W uncapped at 1590 MHz: capped at 70 W by default
    mem_max_w=20.0,
    mem_idle_fraction=0.35,
    compute_rate_hz=3098.0,  # about 2,500 images/s at the default 70 W
    mem_rate_hz=4957.0,
    supports_mem_lock=False,  # Turing: memory clock locks need Ampere or newer
    memory_bytes=15 * 2**30,
    # published: fp16 tensor 65 TFLOP/s; 320 GB/s
    llm_flops_per_s=35e12,
    llm_bytes_per_s=0.27e12,
)
L4 = GpuPart(
    key="l4",
    name="NVIDIA L4 (SIMULATED)",
    min_power_limit_w=40.0,
    max_power_limit_w=72.0,
    default_power_limit_w=72.0,
    sm_clocks_mhz=_clocks(2040, 210),
    mem_clocks_mhz=(6251,),
    idle_sm_clock_mhz=210,
    static_w=10.0,
    voltage_floor_v=0.70,
    voltage_max_v=1.0,
    voltage_knee_mhz=1000.0,
    dynamic_w_per_mhz_v2=0.0388,  # about 105 W uncapped at 2040 MHz
    mem_max_w=22.0,
    mem_idle_fraction=0.33,
    compute_rate_hz=6305.0,  # about 4,800 images/s at the default 72 W
    mem_rate_hz=10088.0,
    memory_bytes=22 * 2**30,
    # published: fp16 tensor 121 TFLOP/s dense; 300 GB/s
    llm_flops_per_s=60e12,
    llm_bytes_per_s=0.25e12,
)
A2 = GpuPart(
    key="a2",
    name="NVIDIA A2 (SIMULATED)",
    min_power_limit_w=40.0,
    max_power_limit_w=60.0,
    default_power_limit_w=60.0,
    sm_clocks_mhz=_clocks(1770, 210),
    mem_clocks_mhz=(6251,),
    idle_sm_clock_mhz=210,
    static_w=4.5,
    voltage_floor_v=0.70,
    voltage_max_v=1.0,
    voltage_knee_mhz=900.0,
    dynamic_w_per_mhz_v2=0.03189,  # about 68 W uncapped at 1770 MHz
    mem_max_w=10.0,
    mem_idle_fraction=0.35,
    compute_rate_hz=1262.0,  # about 1,150 images/s at the default 60 W
    mem_rate_hz=2020.0,
    memory_bytes=15 * 2**30,
    # published: fp16 tensor 18 TFLOP/s dense; 200 GB/s
    llm_flops_per_s=10e12,
    llm_bytes_per_s=0.17e12,
)

PARTS: dict[str, GpuPart] = {part.key: part for part in (T4, L4, A2, H200)}
"""The simulated parts by key (``t4``, ``l4``, ``a2``, ``h200``)."""
