"""Sweep plans: the axes a user asks for (``--power-limits 150:350:25`` ...) and their grid.

Axis syntax: a comma-separated list of values and ``start:stop:step`` ranges (stop included,
and it must be reached exactly), e.g. ``150:350:25``, ``1200,1500:1980:15``. Batch sizes also
take the literal ``auto`` (resolved by the runner to the knee of a batch sweep). Every parser
raises :class:`~infergy.maxq.errors.SweepSpecError` with the offending item and, where a GPU's
limits or clocks are given, the allowed range. A :class:`SweepPoint` is one setting of every
axis (None: left as it is); :class:`Axes` spans the full grid.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from infergy.maxq.control import PowerLimitConstraints
from infergy.maxq.errors import SweepSpecError

AUTO: Literal["auto"] = "auto"
BatchSize = int | Literal["auto"]
PRECISION_NAMES = ("fp32", "fp16", "bf16", "int8")
MAX_AXIS_POINTS = 1000


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep; None on an axis means "as it is" (the default setting).

    Attributes:
        power_limit_w: the power limit to set.
        sm_clock_mhz: the SM clock to lock (min = max).
        mem_clock_mhz: the memory clock to lock.
        batch_size: the batch size, or ``"auto"``.
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8``.
    """

    power_limit_w: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    batch_size: BatchSize | None = None
    precision: str | None = None

    def describe(self) -> str:
        """``300 W, SM 1200 MHz, batch 64, fp16`` (only the axes that are set)."""
        parts = []
        if self.power_limit_w is not None:
            parts.append(f"{self.power_limit_w:g} W")
        if self.sm_clock_mhz is not None:
            parts.append(f"SM {self.sm_clock_mhz} MHz")
        if self.mem_clock_mhz is not None:
            parts.append(f"memory {self.mem_clock_mhz} MHz")
        if self.batch_size is not None:
            parts.append(f"batch {self.batch_size}")
        if self.precision is not None:
            parts.append(self.precision)
        return ", ".join(parts) or "default settings"


@dataclass(frozen=True)
class Axes:
    """The axes of a sweep (an empty axis is not swept)."""

    power_limits_w: tuple[float, ...] = ()
    sm_clocks_mhz: tuple[int, ...] = ()
    mem_clocks_mhz: tuple[int, ...] = ()
    batch_sizes: tuple[BatchSize, ...] = ()
    precisions: tuple[str, ...] = ()

    def grid(self) -> tuple[SweepPoint, ...]:
        """Every combination, the power limit varying slowest and the precision fastest."""
        return tuple(
            SweepPoint(*values)
            for values in itertools.product(
                self.power_limits_w or (None,),
                self.sm_clocks_mhz or (None,),
                self.mem_clocks_mhz or (None,),
                self.batch_sizes or (None,),
                self.precisions or (None,),
            )
        )

    @property
    def size(self) -> int:
        """The number of grid points."""
        sizes = (
            self.power_limits_w,
            self.sm_clocks_mhz,
            self.mem_clocks_mhz,
            self.batch_sizes,
            self.precisions,
        )
        return math.prod(max(1, len(axis)) for axis in sizes)


def _number(text: str, name: str, item: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"{name}: {text!r} in {item!r} is not a number"
        raise SweepSpecError(msg) from None
    if not math.isfinite(value):
        msg = f"{name}: {text!r} in {item!r} is not a finite number"
        raise SweepSpecError(msg)
    return value


def _range(item: str, name: str) -> list[float]:
    fields = item.split(":")
    if len(fields) != 3:
        msg = f"{name}: range {item!r} must be start:stop:step (e.g. 150:350:25)"
        raise SweepSpecError(msg)
    start, stop, step = (_number(f.strip(), name, item) for f in fields)
    if step <= 0:
        msg = f"{name}: range {item!r} needs a step > 0"
        raise SweepSpecError(msg)
    if stop < start:
        msg = f"{name}: range {item!r} runs backwards (stop {stop:g} < start {start:g})"
        raise SweepSpecError(msg)
    count = (stop - start) / step
    if count > MAX_AXIS_POINTS:
        msg = f"{name}: range {item!r} has more than {MAX_AXIS_POINTS} points"
        raise SweepSpecError(msg)
    steps = round(count)
    if abs(count - steps) > 1e-9 * max(1.0, count):
        last = start + math.floor(count) * step
        msg = (
            f"{name}: range {item!r} does not reach its stop {stop:g} in steps of {step:g} "
            f"(the last would be {last:g}); use {start:g}:{last:g}:{step:g}"
        )
        raise SweepSpecError(msg)
    return [start + i * step for i in range(steps + 1)]


def parse_numbers(spec: str, *, name: str) -> tuple[float, ...]:
    """The ascending, de-duplicated values of a list/range spec.

    Raises:
        SweepSpecError: an empty spec or item, a non-number, a bad range.
    """
    items = [item.strip() for item in spec.split(",")]
    if not spec.strip() or any(not item for item in items):
        msg = f"{name}: empty value in {spec!r}"
        raise SweepSpecError(msg)
    values: list[float] = []
    for item in items:
        values.extend(_range(item, name) if ":" in item else [_number(item, name, item)])
    out = tuple(sorted({round(v, 9) for v in values}))
    if len(out) > MAX_AXIS_POINTS:
        msg = f"{name}: more than {MAX_AXIS_POINTS} values"
        raise SweepSpecError(msg)
    return out


def parse_power_limits(
    spec: str, constraints: PowerLimitConstraints | None = None
) -> tuple[float, ...]:
    """Power limits in W (``150:350:25``), checked against a GPU's constraints when given."""
    name = "--power-limits"
    values = parse_numbers(spec, name=name)
    if constraints is not None:
        bad = [v for v in values if not constraints.min_w <= v <= constraints.max_w]
        if bad:
            msg = (
                f"{name}: {', '.join(f'{v:g}' for v in bad)} W outside this GPU's allowed "
                f"range {constraints.range_text}"
            )
            raise SweepSpecError(msg, hint=f"choose limits within {constraints.range_text}")
    elif values[0] <= 0:
        msg = f"{name}: power limits must be > 0 W, got {values[0]:g}"
        raise SweepSpecError(msg)
    return values


def _integers(values: tuple[float, ...], name: str) -> tuple[int, ...]:
    if any(v != int(v) for v in values):
        msg = f"{name}: values must be whole numbers, got {', '.join(f'{v:g}' for v in values)}"
        raise SweepSpecError(msg)
    return tuple(int(v) for v in values)


def parse_clocks(
    spec: str, supported_mhz: Sequence[int] | None = None, *, name: str = "--sm-clocks"
) -> tuple[int, ...]:
    """Clocks in MHz, each one a supported clock of the GPU when the list is given."""
    values = _integers(parse_numbers(spec, name=name), name)
    if supported_mhz:
        allowed = set(supported_mhz)
        for value in values:
            if value not in allowed:
                near = sorted(sorted(allowed, key=lambda s: abs(s - value))[:2])
                msg = (
                    f"{name}: {value} MHz is not a supported clock (nearest: "
                    f"{', '.join(map(str, near))} MHz; supported {min(allowed)}-"
                    f"{max(allowed)} MHz)"
                )
                raise SweepSpecError(msg)
    elif values[0] <= 0:
        msg = f"{name}: clocks must be > 0 MHz"
        raise SweepSpecError(msg)
    return values


def parse_batch_sizes(spec: str) -> tuple[BatchSize, ...]:
    """Batch sizes >= 1, ascending, and ``auto`` last if given (``1,8,32,128,auto``)."""
    name = "--batch-sizes"
    items = [item.strip().lower() for item in spec.split(",")]
    auto = AUTO in items
    rest = ",".join(item for item in items if item != AUTO)
    sizes: tuple[int, ...] = ()
    if rest or not auto:
        sizes = _integers(parse_numbers(rest, name=name), name)
        if sizes[0] < 1:
            msg = f"{name}: batch sizes must be >= 1, got {sizes[0]}"
            raise SweepSpecError(msg)
    return (*sizes, AUTO) if auto else sizes


def parse_precisions(spec: str, known: Sequence[str] = PRECISION_NAMES) -> tuple[str, ...]:
    """Precision names (``fp32,fp16``), in the order given, without repeats."""
    names = [item.strip().lower() for item in spec.split(",")]
    unknown = [n for n in names if n not in known]
    if not spec.strip() or unknown:
        msg = f"--precisions: unknown {', '.join(map(repr, unknown)) or 'empty value'}"
        raise SweepSpecError(msg, hint=f"choose from {', '.join(known)}")
    return tuple(dict.fromkeys(names))


def plan_duration_s(
    points: int, *, point_duration_s: float, settle_s: float, fixed_s: float = 0.0
) -> float:
    """How long a plan takes: each point settles then measures; ``fixed_s`` once (baselines)."""
    return fixed_s + points * (settle_s + point_duration_s)
