"""The MaxQ sweep request: what ``infergy maxq``, ``POST /v1/maxq`` and MQTT ``cmd/maxq`` take.

A :class:`MaxqSpec` is validated by one pydantic model everywhere, like
:class:`~infergy.daemon.jobs.JobSpec` for runs: the workload (the same fields as a run's), the
axes in the command line's syntax (``"power_limits": "150:350:25"``, ``"batch_sizes":
"1,8,32,auto"``), the objective and constraints, and how to measure (point duration, search)::

    MaxqSpec.model_validate({"backend": "sim", "power_limits": "200:700:50", "batch_sizes": "256"})

The axes' syntax is checked here; their values against the GPU (its limit range, its supported
clocks) when the sweep is planned (:func:`plan_axes`), so the error names the allowed range.
Times are seconds; unknown fields are rejected.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from infergy.core.trace import Scenario
from infergy.daemon.jobs import MAX_DURATION_S, Backend, JobSpec, Precision
from infergy.errors import InfergyError
from infergy.maxq.control import PowerLimitConstraints, SupportedClocks
from infergy.maxq.plan import (
    AUTO,
    Axes,
    BatchSize,
    SweepPoint,
    parse_batch_sizes,
    parse_clocks,
    parse_numbers,
    parse_power_limits,
    parse_precisions,
)
from infergy.maxq.points import OBJECTIVES

Objective = Literal["samples-per-joule", "joules-per-query", "tokens-per-joule"]
LATENCY_PERCENTILES = (50.0, 90.0, 99.0)
"""The latency percentiles a result carries (``performance.latency_ms``)."""
_AXES = ("power_limits", "sm_clocks", "mem_clocks", "batch_sizes", "precisions")
_SETTINGS_AXES = ("power_limits", "sm_clocks", "mem_clocks")


class MaxqSpec(BaseModel):
    """One tuning sweep, as requested by a user (CLI flags, HTTP body, MQTT payload)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- the workload (as a run's) ---------------------------------------------------------
    backend: Backend | None = None
    """Inference backend (``sim`` on simulated GPUs); ``None`` as ``infergy run`` picks it."""
    model: str = "auto"
    scenario: str = "offline"
    batch_size: Annotated[int, Field(ge=1, le=65536)] | Literal["auto"] | None = None
    """The default settings' batch (the baseline), and every point's when not swept;
    ``None``: the largest swept batch, else 1."""
    precision: Precision | None = None
    """The baseline's precision, and every point's when not swept; ``None``: the first swept,
    else fp32."""
    target_qps: Annotated[float, Field(gt=0)] | None = None
    gpus: tuple[Annotated[int, Field(ge=0, le=63)], ...] | None = None
    meter: tuple[str, ...] = ()
    workers: Annotated[int, Field(ge=1, le=16)] = 1
    cuda_graphs: bool = True
    channels_last: bool = True
    compile: bool = False
    batching_timeout_ms: Annotated[float, Field(ge=0, le=1000)] = 2.0
    target_latency_ms: Annotated[float, Field(gt=0, le=60_000)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    label: Annotated[str, Field(max_length=200)] | None = None
    workload: Literal["vision", "llm"] | None = None
    """As a run's: ``llm`` is the generative decoder (implied by a decoder's model name)."""
    input_tokens: Annotated[str, Field(max_length=64)] | None = None
    """llm: the prompts' length distribution (as a run's)."""
    output_tokens: Annotated[str, Field(max_length=64)] | None = None
    """llm: the outputs' length distribution (as a run's)."""

    # -- the axes ------------------------------------------------------------------------
    power_limits: Annotated[str, Field(max_length=2000)] | None = None
    """Power limits in W: ``150:350:25`` or ``200,250,300`` (within the GPU's range)."""
    sm_clocks: Annotated[str, Field(max_length=2000)] | None = None
    """SM clocks to lock, MHz (supported clocks of the GPU)."""
    mem_clocks: Annotated[str, Field(max_length=2000)] | None = None
    """Memory clocks to lock, MHz (Ampere and newer)."""
    batch_sizes: Annotated[str, Field(max_length=2000)] | None = None
    """Batch sizes: ``1,8,32,128,auto`` (``auto``: the batch knee, see ``--batch-size auto``)."""
    precisions: Annotated[str, Field(max_length=200)] | None = None
    """Precisions: ``fp32,fp16``."""

    # -- what is optimised and required --------------------------------------------------
    objective: Objective = "samples-per-joule"
    max_latency_ms: Annotated[float, Field(gt=0)] | None = None
    """Points whose latency at ``latency_percentile`` exceeds this are never recommended."""
    latency_percentile: float = 99.0
    min_samples_per_second: Annotated[float, Field(gt=0)] | None = None
    """Points slower than this are never recommended."""
    source: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.]{1,64}$")] | None = None
    """The power source optimised (default ``[maxq] source``)."""

    # -- how ------------------------------------------------------------------------------
    search: Literal["grid", "smart"] = "smart"
    """``grid``: every point; ``smart``: the coordinate and golden-section search."""
    point_duration: Annotated[float, Field(gt=0, le=MAX_DURATION_S)] | None = None
    """Measured seconds per point (default ``[maxq] point_duration_s``)."""
    warmup: Annotated[float, Field(ge=0, le=3600)] | None = None
    settle: Annotated[float, Field(ge=0, le=3600)] | None = None
    idle: Annotated[float, Field(ge=0, le=3600)] | None = None

    @field_validator("batch_size", mode="wrap")
    @classmethod
    def _batch(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            msg = f"batch_size must be an integer from 1 to 65536 or 'auto', not {value!r}"
            raise ValueError(msg) from None

    @field_validator("scenario")
    @classmethod
    def _scenario(cls, value: str) -> str:
        try:  # the one scenario parser, the job model's (Server alone needs a target QPS)
            return Scenario.parse(value).value
        except (ValueError, InfergyError):
            return JobSpec.model_validate({"scenario": value}).scenario  # raises its message

    @field_validator("power_limits", "sm_clocks", "mem_clocks")
    @classmethod
    def _numbers(cls, value: str | None) -> str | None:
        if value is not None:
            _value_error(lambda: parse_numbers(value, name="axis"))
        return value

    @field_validator("batch_sizes")
    @classmethod
    def _batches(cls, value: str | None) -> str | None:
        if value is not None:
            _value_error(lambda: parse_batch_sizes(value))
        return value

    @field_validator("precisions")
    @classmethod
    def _precisions(cls, value: str | None) -> str | None:
        if value is not None:
            _value_error(lambda: parse_precisions(value))
        return value

    @field_validator("latency_percentile")
    @classmethod
    def _percentile(cls, value: float) -> float:
        if value not in LATENCY_PERCENTILES:
            allowed = ", ".join(f"{p:g}" for p in LATENCY_PERCENTILES)
            msg = f"latency_percentile must be one of {allowed}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MaxqSpec:
        if not any(getattr(self, axis) for axis in _AXES):
            msg = "a sweep needs at least one axis: power_limits, sm_clocks, mem_clocks, "
            raise ValueError(msg + "batch_sizes or precisions")
        if self.objective == "tokens-per-joule" and self.base_job().resolved_workload != "llm":
            msg = (
                "tokens-per-joule needs a generative workload's token rate: use --workload llm "
                "(or a decoder's --model)"
            )
            raise ValueError(msg)
        if self.max_latency_ms is not None and self.scenario == Scenario.OFFLINE.value:
            msg = "max_latency_ms applies to server, single-stream and multi-stream, not offline"
            raise ValueError(msg)
        self.base_job()  # the workload fields, checked as a run's
        return self

    # -- derived ---------------------------------------------------------------------------

    @property
    def changes_settings(self) -> bool:
        """Whether the sweep changes GPU settings (power limits or clock locks)."""
        return any(getattr(self, axis) for axis in _SETTINGS_AXES)

    def base_job(self, **changes: Any) -> JobSpec:
        """The run every point is a variant of (the baseline's batch and precision)."""
        fields = {
            "backend": self.backend, "model": self.model, "scenario": self.scenario,
            "target_qps": self.target_qps, "gpus": self.gpus, "meter": self.meter,
            "workers": self.workers, "cuda_graphs": self.cuda_graphs,
            "channels_last": self.channels_last, "compile": self.compile,
            "batching_timeout_ms": self.batching_timeout_ms,
            "target_latency_ms": self.target_latency_ms, "seed": self.seed, "label": self.label,
            "batch_size": self.base_batch_size(), "precision": self.base_precision(),
        }  # fmt: skip
        for llm in ("workload", "input_tokens", "output_tokens"):
            if getattr(self, llm) is not None:
                fields[llm] = getattr(self, llm)
        return JobSpec.model_validate({**fields, **changes})

    def base_batch_size(self) -> int | Literal["auto"] | None:
        """The baseline's batch: ``batch_size``, else the largest swept one, else ``None``.

        ``None`` is the run's default for the backend and scenario, as ``infergy run`` picks it.
        """
        if self.batch_size is not None:
            return self.batch_size
        sizes = [] if self.batch_sizes is None else parse_batch_sizes(self.batch_sizes)
        numbers = [b for b in sizes if b != AUTO]
        return max(numbers) if numbers else (AUTO if sizes else None)

    def base_precision(self) -> str | None:
        """The baseline's precision: ``precision``, else the first swept one, else ``None``.

        ``None`` is the backend's default, as ``infergy run`` picks it.
        """
        if self.precision is not None:
            return self.precision
        return parse_precisions(self.precisions)[0] if self.precisions else None

    def objective_unit(self) -> str:
        """The objective's unit (``samples/J``)."""
        return OBJECTIVES[self.objective].unit


def _value_error(parse: Any) -> None:
    """Run a parser; its error becomes the ValueError pydantic reports for the field."""
    try:
        parse()
    except InfergyError as err:
        raise ValueError(str(err).removeprefix("axis: ")) from None


def plan_axes(
    spec: MaxqSpec,
    constraints: PowerLimitConstraints | None,
    clocks: SupportedClocks | None,
    *,
    auto_batch: int | None = None,
) -> Axes:
    """The sweep's axes, checked against the GPU (the errors name the allowed range).

    ``auto`` in the batch sizes is replaced by ``auto_batch`` (resolved beforehand).

    Raises:
        SweepSpecError: a value outside the GPU's limits or clocks.
    """
    power = () if spec.power_limits is None else parse_power_limits(spec.power_limits, constraints)
    sm: tuple[int, ...] = ()
    mem: tuple[int, ...] = ()
    if spec.sm_clocks is not None:
        sm = parse_clocks(spec.sm_clocks, None if clocks is None else clocks.sm_mhz())
    if spec.mem_clocks is not None:
        supported = None if clocks is None else clocks.mem_mhz
        mem = parse_clocks(spec.mem_clocks, supported, name="--mem-clocks")
    batches: tuple[BatchSize, ...] = ()
    if spec.batch_sizes is not None:
        parsed = parse_batch_sizes(spec.batch_sizes)
        resolved = [auto_batch if b == AUTO and auto_batch is not None else b for b in parsed]
        batches = tuple(sorted({int(b) for b in resolved if b != AUTO}))
        batches += (AUTO,) if AUTO in resolved else ()
    precisions = () if spec.precisions is None else parse_precisions(spec.precisions)
    return Axes(power, sm, mem, batches, precisions)


def point_job(spec: MaxqSpec, point: SweepPoint, base: JobSpec, **changes: Any) -> JobSpec:
    """The run of one point: the base run with the point's batch size and precision."""
    update: dict[str, Any] = dict(changes)
    if point.batch_size is not None:
        update["batch_size"] = point.batch_size
    if point.precision is not None:
        update["precision"] = point.precision
    return base.model_copy(update=update)
