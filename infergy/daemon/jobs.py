"""The job model: what one measurement session is asked to do.

A :class:`JobSpec` is the JSON form of the ``infergy run`` flags. The command line, the HTTP
control API (``POST /v1/runs``) and MQTT requests (``cmd/run``) all validate through this one
pydantic model, so a field means the same thing and fails the same way everywhere::

    JobSpec.model_validate({"backend": "onnxruntime", "scenario": "single-stream", "duration": 10})

Times are seconds; unknown fields are rejected.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from infergy.core.trace import Scenario
from infergy.errors import InfergyError
from infergy.runners.types import WorkloadConfig

Backend = Literal["onnxruntime", "torch", "tensorrt"]
Precision = Literal["fp32", "fp16", "bf16", "int8"]
MAX_DURATION_S = 24 * 3600.0

_METER = re.compile(r"^(nvml|rapl|sim|ptd://[A-Za-z0-9_.\-\[\]:]+:\d{1,5})$")
_SCENARIOS = {s.value for s in Scenario}


class JobSpec(BaseModel):
    """One measurement session, as requested by a user (CLI flags, HTTP body, MQTT payload)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend | None = None
    """Inference backend; ``None`` picks torch on a GPU machine, else onnxruntime."""
    model: str = "auto"
    """``auto`` (the backend's built-in model), a built-in name, or a path to .onnx / .plan."""
    scenario: str = Field(
        default="offline",
        examples=sorted(_SCENARIOS),
        description="offline, server, single-stream or multi-stream (LoadGen spellings too)",
    )
    """LoadGen scenario: offline, server, single-stream or multi-stream."""
    precision: Precision = "fp32"
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 1
    """Samples per inference call (Offline/Server batching; SingleStream uses 1 per query)."""
    duration: Annotated[float, Field(gt=0, le=MAX_DURATION_S)] = 60.0
    """Measured run length in seconds (LoadGen min_duration)."""
    target_qps: Annotated[float, Field(gt=0)] | None = None
    """Server target QPS (also the Offline expected QPS hint)."""
    gpus: tuple[Annotated[int, Field(ge=0, le=63)], ...] | None = None
    """GPU indices to use; ``None`` = all visible GPUs for GPU backends, none for CPU ones."""
    idle: Annotated[float, Field(ge=0, le=3600)] | None = None
    """Idle baseline in seconds before the run; ``None`` takes ``analysis.idle_s``."""
    warmup: Annotated[float, Field(ge=0, le=3600)] = 5.0
    """Unmeasured warm-up in seconds."""
    meter: tuple[Annotated[str, Field(pattern=_METER.pattern)], ...] = ()
    """Meters: ``nvml``, ``rapl``, ``sim``, ``ptd://HOST:PORT``; empty = chosen automatically."""
    strict: bool = False
    """Exit 3 (CLI) / mark the job failed when the result is degraded."""
    calibration_data: Annotated[str, Field(max_length=4096)] | None = None
    """int8 (TensorRT): a directory of .npy batches or one .npz on the measuring host."""
    workers: Annotated[int, Field(ge=1, le=16)] = 1
    """Executors per device for Offline/Server (CUDA streams / TensorRT execution contexts)."""
    cuda_graphs: bool = True
    """torch/TensorRT: replay CUDA graphs for the fixed batch shapes."""
    channels_last: bool = True
    """torch: NHWC memory format for convolution models."""
    compile: bool = False
    """torch: ``torch.compile(mode="max-autotune")``; minutes the first time, then cached."""
    batching_timeout_ms: Annotated[float, Field(ge=0, le=1000)] = 2.0
    """Server: how long a worker waits to fill a batch after the oldest pending sample."""
    target_latency_ms: Annotated[float, Field(gt=0, le=60_000)] | None = None
    """Server latency bound; ``None``: max(15 ms, 3 full batches + the batching timeout)."""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    """LoadGen's RNG seeds and the input generator's (0 keeps LoadGen's defaults)."""
    label: Annotated[str, Field(max_length=200)] | None = None
    """Free text stored with the result."""

    @field_validator("scenario")
    @classmethod
    def _scenario(cls, value: str) -> str:
        try:
            return Scenario.parse(value).value
        except (ValueError, InfergyError):
            msg = f"unknown scenario {value!r}; use one of {', '.join(sorted(_SCENARIOS))}"
            raise ValueError(msg) from None

    @field_validator("meter", mode="before")
    @classmethod
    def _meters(cls, value: Any) -> Any:
        # before the schema's pattern check, so the error says what is allowed, in words
        if not isinstance(value, list | tuple):
            return value
        for item in value:
            if isinstance(item, str) and not _METER.match(item):
                msg = f"bad meter {item!r}; use nvml, rapl, sim or ptd://HOST:PORT"
                raise ValueError(msg)
        names = [item for item in value if isinstance(item, str)]  # others: pydantic's type error
        if len(set(names)) != len(names):
            msg = "a meter is listed twice"
            raise ValueError(msg)
        return tuple(value)  # a JSON array arrives as a list, which strict mode refuses

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and len(set(value)) != len(value):
            msg = "a GPU index is listed twice"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        if self.scenario == Scenario.SERVER.value and self.target_qps is None:
            msg = "the server scenario needs target_qps (queries per second to offer)"
            raise ValueError(msg)
        if self.compile and self.backend not in (None, "torch"):
            msg = f"compile is a torch option; the backend is {self.backend}"
            raise ValueError(msg)
        return self

    def workload_config(self, gpus: tuple[int, ...]) -> WorkloadConfig:
        """The runner's config for this job on ``gpus`` (``()``: the CPU)."""
        return WorkloadConfig(
            backend=self.backend or "onnxruntime", model=self.model, precision=self.precision,
            batch_size=self.batch_size, scenario=self.scenario_enum, duration_s=self.duration,
            target_qps=self.target_qps, gpus=gpus, seed=self.seed,
            batching_timeout_ms=self.batching_timeout_ms,
            target_latency_ms=self.target_latency_ms, workers_per_device=self.workers,
            cuda_graphs=self.cuda_graphs, channels_last=self.channels_last, compile=self.compile,
            calibration_data=None if self.calibration_data is None else Path(self.calibration_data),
        )  # fmt: skip

    @property
    def scenario_enum(self) -> Scenario:
        """The scenario as the core's enum."""
        return Scenario.parse(self.scenario)
