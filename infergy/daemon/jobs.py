"""The job model: what one measurement session is asked to do.

A :class:`JobSpec` is the JSON form of the ``infergy run`` flags. The command line, the HTTP
control API (``POST /v1/runs``) and MQTT requests (``cmd/run``) all validate through this one
pydantic model, so a field means the same thing and fails the same way everywhere::

    JobSpec.model_validate({"backend": "onnxruntime", "scenario": "single-stream", "duration": 10})

Times are seconds; unknown fields are rejected, and so are settings that would be silently
ignored or cannot work: NaN or infinite numbers, ``target_qps`` outside Server (Offline runs
as fast as the system can, its expected QPS comes from the warm-up), a batch that the
scenario's queries cannot fill (SingleStream sends one sample per query, MultiStream eight),
a ``ptd://`` port outside 1-65535.
"""

from __future__ import annotations

import re
from pathlib import Path
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

from infergy.core.trace import MULTI_STREAM_SAMPLES_PER_QUERY, Scenario
from infergy.errors import InfergyError, JobError
from infergy.runners.gen_config import (
    DEFAULT_INPUT_TOKENS,
    DEFAULT_OUTPUT_TOKENS,
    auto_model,
    check_generative,
    is_shape_name,
)
from infergy.runners.types import NETWORK_BACKENDS, WorkloadConfig

Backend = Literal["onnxruntime", "torch", "tensorrt", "sim", "kserve", "openai"]
Precision = Literal["fp32", "fp16", "bf16", "int8"]
MAX_DURATION_S = 24 * 3600.0
MAX_PORT = 65535

GPU_BACKENDS = ("torch", "tensorrt", "sim")
DEFAULT_PRECISION = {"gpu": "fp16", "cpu": "fp32"}
"""Precision when a job names none: fp16 on a GPU backend (what its tensor cores are built
for), fp32 on the CPU (ONNX Runtime runs the model's own input type)."""
DEFAULT_POOLED_BATCH = {"gpu": 256, "cpu": 1}
"""Offline/Server batch when a job names none. On a GPU, 256 fills it (H200, ResNet-50 fp16:
about 24 samples/s/W at 256 against 4.3 at fp32 batch 1) until a MaxQ ``--batch-size auto``
chooses it per model; on the CPU, 1 (ONNX Runtime's own threads use the cores)."""
DEFAULT_STREAM_BATCH = {Scenario.SINGLE_STREAM: 1, Scenario.MULTI_STREAM: 8}
DEFAULT_LLM_PRECISION = {"gpu": "bf16", "cpu": "fp32"}
"""The llm workload's precision when a job names none: bf16 on a GPU (what language models
are served in), fp32 on the CPU."""
DEFAULT_LLM_BATCH = {"gpu": 64, "cpu": 4}
"""The llm workload's Offline/Server batch (KV cache slots) when a job names none."""
Workload = Literal["vision", "llm"]
"""SingleStream: one sample a query; MultiStream: its 8-sample query in one call."""

_METER = re.compile(r"^(nvml|rapl|sim|ptd://[A-Za-z0-9_.\-\[\]:]+:\d{1,5})$")
_SCENARIOS = {s.value for s in Scenario}


class HintedValueError(ValueError):
    """A field rule's refusal that carries its hint apart (the command line prints it as one).

    Its text (what a 422 says) ends with the hint in parentheses.
    """

    def __init__(self, message: str, hint: str | None) -> None:
        super().__init__(message + (f" ({hint})" if hint else ""))
        self.message, self.hint = message, hint


class JobSpec(BaseModel):
    """One measurement session, as requested by a user (CLI flags, HTTP body, MQTT payload)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    backend: Backend | None = None
    """Inference backend; ``None`` picks torch on a GPU machine, else onnxruntime; ``sim``
    sleeps a simulated GPU's batch latency (SIMULATED)."""
    model: str = "auto"
    """``auto`` (the backend's built-in model), a built-in name, or a path to .onnx / .plan."""
    scenario: str = Field(
        default="offline",
        examples=sorted(_SCENARIOS),
        description="offline, server, single-stream or multi-stream (LoadGen spellings too)",
    )
    """LoadGen scenario: offline, server, single-stream or multi-stream."""
    precision: Precision | None = None
    """``None``: fp16 on a GPU backend (torch, tensorrt, sim), fp32 on onnxruntime."""
    batch_size: Annotated[int, Field(ge=1, le=65536)] | Literal["auto"] | None = None
    """Samples per inference call; ``None``: Offline/Server 256 on a GPU backend and 1 on
    onnxruntime, MultiStream 8, SingleStream 1; ``auto``: the knee of a batch sweep (the
    smallest batch within ``[maxq] knee_within`` of the best samples/J), measured once per
    model, precision, GPU and backend, then cached."""
    duration: Annotated[float, Field(gt=0, le=MAX_DURATION_S)] = 60.0
    """Measured run length in seconds (LoadGen min_duration)."""
    target_qps: Annotated[float, Field(gt=0)] | None = None
    """Server: the queries per second to offer (required there, refused elsewhere)."""
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
    endpoint: Annotated[str, Field(max_length=2048, pattern=r"^https?://")] | None = None
    """kserve: the model's URL (``http://HOST:PORT/v2/models/NAME``); openai: the API's
    (``http://HOST:PORT/v1``, or ``.../v1/chat/completions``). The service sends the requests."""
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 16
    """kserve/openai: requests in flight at most (connections are kept and reused)."""
    request_timeout: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """kserve/openai: one request's time limit in seconds (a whole stream for openai)."""
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] = 128
    """openai: tokens asked for per sample."""
    prompts: Annotated[str, Field(max_length=4096)] | None = None
    """openai: a text file of prompts (one per line) on the measuring host."""
    workload: Workload | None = None
    """``vision`` (image models) or ``llm`` (a generative decoder under LoadGen's token
    latencies: torch or sim); ``None``: ``llm`` when ``model`` names a decoder shape
    (``tiny``... with ``workload`` llm, ``llama-1b-shape``, ``llama-8b-shape``), else vision."""
    input_tokens: Annotated[str, Field(max_length=64)] | None = None
    """llm: the prompts' length distribution: ``128``, ``64:512`` or ``normal:MEAN:STD``
    (default ``normal:512:128``)."""
    output_tokens: Annotated[str, Field(max_length=64)] | None = None
    """llm: the outputs' length distribution, at least 2 tokens (default ``normal:128:32``)."""
    ttft_ms: Annotated[float, Field(gt=0, le=600_000)] | None = None
    """llm Server: LoadGen's time-to-first-token bound (default 2000 ms)."""
    tpot_ms: Annotated[float, Field(gt=0, le=60_000)] | None = None
    """llm Server: LoadGen's time-per-output-token bound (default 200 ms)."""

    @field_validator("scenario")
    @classmethod
    def _scenario(cls, value: str) -> str:
        try:
            return Scenario.parse(value).value
        except (ValueError, InfergyError):
            msg = f"unknown scenario {value!r}; use one of {', '.join(sorted(_SCENARIOS))}"
            raise ValueError(msg) from None

    @field_validator("batch_size", mode="wrap")
    @classmethod
    def _batch(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # one error at batch_size, not one per branch of the int | "auto" union
        try:
            return handler(value)
        except ValidationError:
            msg = f"batch_size must be an integer from 1 to 65536 or 'auto', not {value!r}"
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
            if isinstance(item, str) and item.startswith("ptd://"):
                port = int(item.rpartition(":")[2])
                if not 1 <= port <= MAX_PORT:
                    msg = f"bad meter {item!r}: the port must be 1-{MAX_PORT}, got {port}"
                    raise ValueError(msg)
        names = [item for item in value if isinstance(item, str)]  # others: pydantic's type error
        if len(set(names)) != len(names):
            msg = "a meter is listed twice"
            raise ValueError(msg)
        return tuple(value)  # a JSON array arrives as a list, which strict mode refuses

    @field_validator("endpoint", mode="before")
    @classmethod
    def _endpoint(cls, value: Any) -> Any:
        # before the schema's pattern check, so the error says what is allowed, in words
        if isinstance(value, str) and not re.match(r"^https?://", value):
            msg = f"endpoint must be an http(s):// URL, got {value!r}"
            raise ValueError(msg)
        return value

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
        scenario = self.scenario_enum
        if self.target_qps is not None and scenario is not Scenario.SERVER:
            msg = (
                f"target_qps is a server setting; {scenario.value} does not use it (Offline "
                "runs as fast as it can, its expected QPS measured by the warm-up)"
            )
            raise ValueError(msg)
        batch = 1 if self.batch_size in (None, "auto") else int(self.batch_size)
        if scenario is Scenario.SINGLE_STREAM and self.batch_size == "auto":
            msg = "single-stream sends 1 sample per query: batch_size auto has nothing to choose"
            raise ValueError(msg)
        if scenario is Scenario.SINGLE_STREAM and batch > 1:
            msg = f"single-stream sends 1 sample per query: batch_size {batch} cannot be formed"
            raise ValueError(msg)
        if scenario is Scenario.MULTI_STREAM and batch > MULTI_STREAM_SAMPLES_PER_QUERY:
            msg = (
                f"a multi-stream query carries {MULTI_STREAM_SAMPLES_PER_QUERY} samples: "
                f"batch_size {batch} cannot be formed"
            )
            raise ValueError(msg)
        if self.compile and self.backend not in (None, "torch"):
            msg = f"compile is a torch option; the backend is {self.backend}"
            raise ValueError(msg)
        network = self.backend in NETWORK_BACKENDS
        if network and self.endpoint is None:
            msg = f"the {self.backend} backend needs endpoint (the running server's URL)"
            raise ValueError(msg)
        if not network and self.endpoint is not None:
            msg = f"endpoint is for the kserve and openai backends, not {self.backend or 'auto'}"
            raise ValueError(msg)
        if self.prompts is not None and self.backend != "openai":
            msg = f"prompts is an openai option; the backend is {self.backend or 'auto'}"
            raise ValueError(msg)
        if network and self.endpoint is not None:
            _check_endpoint(self.backend or "", self.endpoint, self.model)
        self._generative_consistent()
        return self

    def _generative_consistent(self) -> None:
        """The llm fields only with the llm workload, checked as its runner will."""
        llm_only = ("input_tokens", "output_tokens", "ttft_ms", "tpot_ms")
        if self.workload == "vision" and is_shape_name(self.model):
            msg = f"{self.model} is a language model; the vision workload runs image models"
            raise ValueError(msg)
        if self.resolved_workload != "llm":
            given = [f for f in llm_only if getattr(self, f) is not None]
            if given:
                msg = f"{given[0]} is an llm setting; the workload is {self.resolved_workload}"
                raise ValueError(msg)
            return
        backend = self.backend or "torch"
        try:
            check_generative(
                backend=backend,
                model=self.model if self.model != "auto" else auto_model(backend, (0,)),
                scenario=self.scenario_enum, precision=self.resolved_precision,
                input_tokens=self.input_tokens or DEFAULT_INPUT_TOKENS,
                output_tokens=self.output_tokens or DEFAULT_OUTPUT_TOKENS,
                ttft_ms=self.ttft_ms, tpot_ms=self.tpot_ms,
            )  # fmt: skip
        except InfergyError as err:
            raise HintedValueError(str(err), err.hint) from None

    @property
    def resolved_workload(self) -> str:
        """The workload asked, else ``llm`` for a decoder's name, else ``vision``."""
        if self.workload is not None:
            return self.workload
        return (
            "llm"
            if is_shape_name(self.model) and self.backend not in NETWORK_BACKENDS
            else "vision"
        )

    @property
    def resolved_precision(self) -> str:
        """The precision asked, else the backend's default (:data:`DEFAULT_PRECISION`)."""
        if self.precision is None and self.resolved_workload == "llm":
            return DEFAULT_LLM_PRECISION[self._device_kind]
        return self.precision or DEFAULT_PRECISION[self._device_kind]

    @property
    def resolved_batch_size(self) -> int:
        """The batch asked, else the scenario's and backend's default."""
        if isinstance(self.batch_size, int):
            return self.batch_size
        if self.batch_size == "auto":
            msg = "batch size auto was not resolved before the workload was configured"
            raise JobError(msg)
        sc = self.scenario_enum
        if self.resolved_workload == "llm":
            return DEFAULT_STREAM_BATCH.get(sc) or DEFAULT_LLM_BATCH[self._device_kind]
        return DEFAULT_STREAM_BATCH.get(sc) or DEFAULT_POOLED_BATCH[self._device_kind]

    @property
    def _device_kind(self) -> str:
        if self.resolved_workload == "llm" and self.backend in (None, "torch"):
            return "cpu" if self.gpus == () else "gpu"  # torch generates on the CPU too
        return "gpu" if self.backend in GPU_BACKENDS else "cpu"

    def workload_config(self, gpus: tuple[int, ...]) -> WorkloadConfig:
        """The runner's config for this job on ``gpus`` (``()``: the CPU), defaults resolved.

        Raises:
            JobError: ``batch_size`` is still ``auto`` (resolve it first: ``daemon.auto_batch``).
        """
        if self.batch_size == "auto":
            msg = "batch size auto was not resolved before the workload was configured"
            raise JobError(msg)
        if self.backend in NETWORK_BACKENDS:
            gpus = ()  # the server runs the model; `gpus` only chose what is metered
        if self.resolved_workload == "llm" and self.gpus is None and gpus == ():
            # no GPU was found: torch generates on the CPU, with the CPU's defaults
            return self.model_copy(update={"gpus": ()}).workload_config(gpus)
        default_backend = "torch" if self.resolved_workload == "llm" else "onnxruntime"
        return WorkloadConfig(
            backend=self.backend or default_backend, model=self.model,
            precision=self.resolved_precision, batch_size=self.resolved_batch_size,
            scenario=self.scenario_enum, duration_s=self.duration,
            target_qps=self.target_qps, gpus=gpus, seed=self.seed,
            batching_timeout_ms=self.batching_timeout_ms,
            target_latency_ms=self.target_latency_ms, workers_per_device=self.workers,
            cuda_graphs=self.cuda_graphs, channels_last=self.channels_last, compile=self.compile,
            calibration_data=None if self.calibration_data is None else Path(self.calibration_data),
            endpoint=self.endpoint, concurrency=self.concurrency,
            request_timeout_s=self.request_timeout, max_tokens=self.max_tokens,
            prompts=None if self.prompts is None else Path(self.prompts),
            workload=self.resolved_workload,
            input_tokens=self.input_tokens or DEFAULT_INPUT_TOKENS,
            output_tokens=self.output_tokens or DEFAULT_OUTPUT_TOKENS,
            ttft_ms=self.ttft_ms, tpot_ms=self.tpot_ms,
        )  # fmt: skip

    @property
    def scenario_enum(self) -> Scenario:
        """The scenario as the core's enum."""
        return Scenario.parse(self.scenario)


def _check_endpoint(backend: str, endpoint: str, model: str) -> None:
    """The endpoint's form for its protocol, checked before the job is queued."""
    from infergy.runners.network.kserve import KServeModel  # noqa: PLC0415 (aiohttp: lazily)
    from infergy.runners.network.openai import OpenAIModel  # noqa: PLC0415

    try:
        if backend == "kserve":
            KServeModel.parse(endpoint)
        else:
            OpenAIModel.parse(endpoint, model=model, max_tokens=1)
    except InfergyError as err:
        msg = f"{err}" + (f" ({err.hint})" if err.hint else "")
        raise ValueError(msg) from None
