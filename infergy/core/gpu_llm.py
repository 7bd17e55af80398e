"""The simulated GPU under a generative load: how long a prefill or decode step takes, at what W.

Pure functions, no I/O; everything they compute is SIMULATED. A step (one prefill of new
sequences, or one decode step of every running sequence) is a roofline: its FLOPs at the part's
transformer rate scaled by the SM clock, its bytes at the memory bandwidth scaled by the memory
clock, the longer of the two plus a fixed launch overhead. Prefill is compute-bound (the SMs
busy, memory lightly used), a decode step at small batches memory-bound (the weights and KV
cache streamed once per token, the SMs mostly stalled). Power follows the same shape as
:mod:`infergy.core.gpu_model`'s::

    P = static + c * f * V(f)^2 * a_sm + P_mem(mem clock, a_mem)

with ``a_sm`` the share of the step the SMs compute (stalled SMs draw a fraction) and ``a_mem``
the share of the bandwidth in use; a power cap lowers the SM clock of the step until it fits,
as for the vision model. So prefill draws more power per second than decode, and a decode
token costs less energy at larger batches: the split the generative figures measure.

The simulated NVML device's busy power is the board's :func:`reference_point` (every part of
the GPU fully busy); a step's :func:`activity` is where its power lies between idle and that
reference, which the simulated workload reports live and the device follows.
"""

from __future__ import annotations

from dataclasses import dataclass

from infergy.core.gpu_model import (
    BISECTION_STEPS,
    PRECISIONS,
    GpuPart,
    ModelSettings,
    idle_state,
    memory_clock_mhz,
    memory_power_w,
)
from infergy.core.llm import LlmShape
from infergy.errors import WorkloadError


@dataclass(frozen=True)
class StepPoint:
    """One simulated step (SIMULATED).

    Attributes:
        seconds: how long it takes.
        power_w: board power while it runs.
        sm_clock_mhz: the SM clock it runs at.
        compute_bound: True when its FLOPs, not its bytes, set its length.
        power_capped: True when the power limit held its clock down.
    """

    seconds: float
    power_w: float
    sm_clock_mhz: float
    compute_bound: bool
    power_capped: bool = False


def _check(part: GpuPart) -> None:
    if part.llm_flops_per_s <= 0 or part.llm_bytes_per_s <= 0:
        msg = f"the simulated {part.name} has no model of a generative workload"
        raise WorkloadError(msg, hint="use --model h200, l4, t4 or a2")


def _at_clock(  # noqa: PLR0917 (evaluated in the bisection's inner loop)
    part: GpuPart, f_mhz: float, mem_mhz: int, flops: float, nbytes: float, precision: str
) -> StepPoint:
    cost = PRECISIONS[precision]
    compute_s = flops / (part.llm_flops_per_s * cost.compute * f_mhz / part.max_sm_clock_mhz)
    mem_s = nbytes / (part.llm_bytes_per_s * mem_mhz / part.mem_clocks_mhz[0])
    busy_s = max(compute_s, mem_s, 1e-12)
    step_s = part.llm_step_overhead_s + busy_s
    busy = busy_s / step_s
    working = compute_s / busy_s
    sm_activity = busy * (working + part.stall_power_fraction * (1.0 - working)) * cost.power
    mem_activity = busy * mem_s / busy_s
    volts = part.voltage_v(f_mhz)
    dynamic_w = part.dynamic_w_per_mhz_v2 * f_mhz * volts * volts * sm_activity
    power = part.static_w + dynamic_w + memory_power_w(part, mem_mhz, mem_activity)
    return StepPoint(step_s, power, f_mhz, compute_s >= mem_s)


def step_point(
    part: GpuPart, settings: ModelSettings, *, flops: float, nbytes: float, precision: str
) -> StepPoint:
    """A step of ``flops`` and ``nbytes`` under ``settings`` (the cap lowers its clock).

    Raises:
        WorkloadError: the part has no generative model.
    """
    _check(part)
    if precision not in PRECISIONS:
        msg = f"the simulated GPU has no model of {precision}"
        raise WorkloadError(msg, hint="use --precision bf16")
    mem = memory_clock_mhz(part, settings.mem_lock_mhz)
    lo, hi = float(part.min_sm_clock_mhz), float(part.max_sm_clock_mhz)
    if settings.sm_lock_mhz is not None:
        hi = min(hi, max(lo, float(settings.sm_lock_mhz[1])))
    top = _at_clock(part, hi, mem, flops, nbytes, precision)
    limit = settings.power_limit_w
    if top.power_w <= limit:
        return top
    if _at_clock(part, lo, mem, flops, nbytes, precision).power_w > limit:
        return _capped(_at_clock(part, lo, mem, flops, nbytes, precision))
    for _ in range(BISECTION_STEPS):  # power rises with the clock: bisection finds the cap's
        mid = 0.5 * (lo + hi)
        if _at_clock(part, mid, mem, flops, nbytes, precision).power_w <= limit:
            lo = mid
        else:
            hi = mid
    return _capped(_at_clock(part, lo, mem, flops, nbytes, precision))


def _capped(p: StepPoint) -> StepPoint:
    return StepPoint(p.seconds, p.power_w, p.sm_clock_mhz, p.compute_bound, power_capped=True)


def prefill_point(
    part: GpuPart,
    settings: ModelSettings,
    shape: LlmShape,
    prompt_tokens: list[int] | tuple[int, ...],
    precision: str,
) -> StepPoint:
    """One prefill of these prompts (it also yields each sequence's first token)."""
    nbytes = shape.streamed_weight_bytes(precision) + shape.kv_bytes_per_token(precision) * sum(
        prompt_tokens
    )
    return step_point(part, settings, flops=shape.prefill_flops(prompt_tokens),
                      nbytes=float(nbytes), precision=precision)  # fmt: skip


def decode_point(
    part: GpuPart,
    settings: ModelSettings,
    shape: LlmShape,
    context_tokens: list[int] | tuple[int, ...],
    precision: str,
) -> StepPoint:
    """One decode step of sequences with these contexts (one token each)."""
    return step_point(part, settings, flops=shape.decode_flops(context_tokens),
                      nbytes=shape.decode_bytes(context_tokens, precision),
                      precision=precision)  # fmt: skip


def reference_point(part: GpuPart, settings: ModelSettings, precision: str) -> StepPoint:
    """Every part of the GPU busy (SMs computing, bandwidth saturated): no step draws more."""
    _check(part)
    cost = PRECISIONS.get(precision, PRECISIONS["fp16"])
    mem = memory_clock_mhz(part, settings.mem_lock_mhz)
    lo, hi = float(part.min_sm_clock_mhz), float(part.max_sm_clock_mhz)
    if settings.sm_lock_mhz is not None:
        hi = min(hi, max(lo, float(settings.sm_lock_mhz[1])))

    def power(f: float) -> float:
        volts = part.voltage_v(f)
        dyn = part.dynamic_w_per_mhz_v2 * f * volts * volts * cost.power
        return part.static_w + dyn + memory_power_w(part, mem, 1.0)

    if power(hi) <= settings.power_limit_w:
        return StepPoint(1.0, power(hi), hi, True)
    if power(lo) > settings.power_limit_w:
        return StepPoint(1.0, power(lo), lo, True, power_capped=True)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if power(mid) <= settings.power_limit_w else (lo, mid)
    return StepPoint(1.0, power(lo), lo, True, power_capped=True)


def activity(part: GpuPart, settings: ModelSettings, step: StepPoint, precision: str) -> float:
    """Where a step's power lies between idle (0) and :func:`reference_point` (1)."""
    idle_w = idle_state(part, settings).power_w
    ref_w = reference_point(part, settings, precision).power_w
    if ref_w <= idle_w:
        return 1.0
    return min(1.0, max(0.0, (step.power_w - idle_w) / (ref_w - idle_w)))
