"""The runners' public value types: what a workload is asked to do, and what a run gives back.

These are plain frozen dataclasses so the session orchestrator, the job model and the child
process that runs LoadGen (:mod:`infergy.runners.child`) can pass them around as they are;
:meth:`WorkloadConfig.to_json` / :meth:`WorkloadConfig.from_json` carry one over the pipe.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from infergy.core.gen_logs import GenerationLog
from infergy.core.mlperf import LoadgenRun
from infergy.core.trace import QueryLog, Scenario
from infergy.errors import WorkloadError
from infergy.runners.gen_config import (
    DEFAULT_INPUT_TOKENS,
    DEFAULT_OUTPUT_TOKENS,
    WORKLOADS,
    auto_model,
    check_generative,
    is_shape_name,
)

NETWORK_BACKENDS = ("kserve", "openai")
"""Backends that send LoadGen's queries to a running inference server (``runners/network``)."""
BACKENDS = ("onnxruntime", "torch", "tensorrt", "sim", *NETWORK_BACKENDS)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/infergy`` (default ``~/.cache/infergy``): plans, compiled models."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "infergy"


@dataclass(frozen=True)
class WorkloadConfig:
    """One inference workload under LoadGen.

    Attributes:
        backend: ``onnxruntime`` | ``torch`` | ``tensorrt`` | ``sim`` (a SIMULATED GPU).
        model: ``auto`` (the backend's built-in default), a built-in name (``tiny``,
            ``resnet50``) or a path to an ``.onnx`` file or a TensorRT ``.plan``/``.engine``.
        precision: ``fp32`` | ``fp16`` | ``bf16`` | ``int8``.
        batch_size: the largest batch the SUT forms (Offline and Server batching).
        scenario: the LoadGen scenario of the measured run.
        duration_s: LoadGen's ``min_duration``.
        target_qps: Server's target QPS (default: half the capacity measured at warmup);
            for Offline a hint for ``offline_expected_qps``.
        gpus: GPU indices (as CUDA numbers them); ``()`` runs on the CPU.
        seed: LoadGen's RNG seeds and the input generator's (0 keeps LoadGen's defaults).
        batching_timeout_ms: how long the Server batcher waits to fill a batch.
        cache_dir: where compiled plans/artifacts are kept (default: :func:`default_cache_dir`).
        target_latency_ms: Server latency bound (default: max(15 ms, 3x a full batch + timeout)).
        workers_per_device: concurrent executors per device (streams / execution contexts).
        cuda_graphs: torch/TensorRT: capture CUDA graphs for the fixed batch shapes.
        channels_last: torch: NHWC memory format for convolution models.
        compile: torch: ``torch.compile(mode="max-autotune")`` (minutes, cached in cache_dir).
        intra_op_threads: onnxruntime CPU threads (0: onnxruntime's default).
        calibration_data: tensorrt int8: a directory of ``.npy`` files or one ``.npz``, each
            array a batch of preprocessed inputs ``(N, *sample shape)``
            (:mod:`infergy.runners.calib_data`); None calibrates on generated inputs.
        endpoint: kserve: the model's URL (``http://host:8000/v2/models/NAME``); openai: the
            API's (``http://host:8000/v1``, or ``.../v1/chat/completions`` for chat).
        concurrency: kserve/openai: requests in flight at most (one connection each, reused).
        request_timeout_s: kserve/openai: one request's limit (a stream's, for openai).
        max_tokens: openai: tokens asked for per sample.
        prompts: openai: a text file, one prompt per line (None: built-in generated prompts).
        workload: ``vision`` (image models) or ``llm`` (a generative decoder, token
            latencies; :mod:`infergy.runners.gen_config`).
        input_tokens: llm: the prompts' length distribution (``128``, ``64:512``,
            ``normal:512:128``; :mod:`infergy.core.lengths`).
        output_tokens: llm: the outputs' length distribution (at least 2 tokens).
        ttft_ms: llm Server: LoadGen's time-to-first-token bound (None: 2000 ms).
        tpot_ms: llm Server: LoadGen's time-per-output-token bound (None: 200 ms).
    """

    backend: str
    model: str = "auto"
    precision: str = "fp32"
    batch_size: int = 1
    scenario: Scenario = Scenario.OFFLINE
    duration_s: float = 60.0
    target_qps: float | None = None
    gpus: tuple[int, ...] = ()
    seed: int = 0
    batching_timeout_ms: float = 2.0
    cache_dir: Path | None = None
    target_latency_ms: float | None = None
    workers_per_device: int = 1
    cuda_graphs: bool = True
    channels_last: bool = True
    compile: bool = False
    intra_op_threads: int = 0
    calibration_data: Path | None = None
    endpoint: str | None = None
    concurrency: int = 16
    request_timeout_s: float = 60.0
    max_tokens: int = 128
    prompts: Path | None = None
    workload: str = "vision"
    input_tokens: str = DEFAULT_INPUT_TOKENS
    output_tokens: str = DEFAULT_OUTPUT_TOKENS
    ttft_ms: float | None = None
    tpot_ms: float | None = None

    @property
    def generative(self) -> bool:
        """Whether the workload is the generative decoder's (``llm``)."""
        return self.workload == "llm"

    @property
    def network(self) -> bool:
        """Whether the workload is a running server's (kserve, openai)."""
        return self.backend in NETWORK_BACKENDS

    def validate(self) -> WorkloadConfig:
        """Check the values that need no backend; returns a normalised copy.

        Raises:
            WorkloadError: an unknown backend or precision, or a value out of range.
        """
        hint = "see `infergy run --help`"
        checks = [
            (self.backend in BACKENDS, f"unknown backend {self.backend!r} ({', '.join(BACKENDS)})"),
            (self.precision in PRECISIONS, f"unknown precision {self.precision!r} "
                                           f"({', '.join(PRECISIONS)})"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.duration_s > 0, f"duration must be > 0 s, got {self.duration_s}"),
            (self.target_qps is None or self.target_qps > 0,
             f"target QPS must be > 0, got {self.target_qps}"),
            (self.batching_timeout_ms >= 0, "batching timeout must be >= 0 ms"),
            (self.workers_per_device >= 1, "workers per device must be >= 1"),
            (all(g >= 0 for g in self.gpus) and len(set(self.gpus)) == len(self.gpus),
             f"GPU indices must be distinct and >= 0, got {list(self.gpus)}"),
            (self.target_latency_ms is None or self.target_latency_ms > 0,
             "target latency must be > 0 ms"),
            (self.calibration_data is None or self.precision == "int8",
             f"calibration data is for int8 builds; precision is {self.precision}"),
            (not self.network or bool(self.endpoint),
             f"the {self.backend} backend needs the server's endpoint URL"),
            (self.network or self.endpoint is None,
             f"an endpoint is for the kserve and openai backends, not {self.backend}"),
            (self.concurrency >= 1, "concurrency must be >= 1"),
            (self.request_timeout_s > 0, "the request timeout must be > 0 s"),
            (self.max_tokens >= 1, "max tokens must be >= 1"),
        ]  # fmt: skip
        for ok, msg in checks:
            if not ok:
                raise WorkloadError(msg, hint=hint)
        cfg = self._generative_checked()
        return replace(
            cfg,
            scenario=Scenario(self.scenario),
            gpus=tuple(int(g) for g in self.gpus),
            calibration_data=(
                None if self.calibration_data is None else Path(self.calibration_data).expanduser()
            ),
            prompts=None if self.prompts is None else Path(self.prompts).expanduser(),
        )

    def _generative_checked(self) -> WorkloadConfig:
        """A model name of a decoder means ``llm``; a generative job's settings checked."""
        if self.workload not in WORKLOADS:
            msg = f"unknown workload {self.workload!r} ({', '.join(WORKLOADS)})"
            raise WorkloadError(msg, hint="see `infergy run --help`")
        cfg = self
        if is_shape_name(self.model) and not self.network:
            cfg = replace(cfg, workload="llm")
        if not cfg.generative:
            return cfg
        if cfg.model == "auto":
            cfg = replace(cfg, model=auto_model(cfg.backend, tuple(cfg.gpus)))
        check_generative(
            backend=cfg.backend, model=cfg.model, scenario=Scenario(cfg.scenario),
            precision=cfg.precision, input_tokens=cfg.input_tokens,
            output_tokens=cfg.output_tokens, ttft_ms=cfg.ttft_ms, tpot_ms=cfg.tpot_ms,
        )  # fmt: skip
        return cfg

    @property
    def device_names(self) -> list[str]:
        """Per-device log names: ``gpu<i>`` per GPU index, ``["server"]`` or ``["cpu"]``."""
        if self.network:
            return ["server"]
        return [f"gpu{g}" for g in self.gpus] or ["cpu"]

    @property
    def resolved_cache_dir(self) -> Path:
        """The cache directory to use."""
        return self.cache_dir or default_cache_dir()

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (Path and tuple spelled as str and list)."""
        d = asdict(self)
        d["scenario"] = self.scenario.value
        d["gpus"] = list(self.gpus)
        for name in ("cache_dir", "calibration_data", "prompts"):
            value = getattr(self, name)
            d[name] = None if value is None else str(value)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WorkloadConfig:
        """Inverse of :meth:`to_json`."""
        d = dict(d)
        d["scenario"] = Scenario.parse(str(d["scenario"]))
        d["gpus"] = tuple(d.get("gpus") or ())
        for name in ("cache_dir", "calibration_data", "prompts"):
            d[name] = None if d.get(name) is None else Path(d[name])
        return cls(**d)


@dataclass(frozen=True)
class Progress:
    """How far a phase has come (reported about twice a second)."""

    phase: str
    queries: int
    samples: int
    elapsed_s: float


@dataclass(frozen=True)
class RunOutcome:
    """What one measured LoadGen run gives back.

    Attributes:
        queries: every query completed, on the session clock.
        per_device: the same queries split by the device that ran them (``gpu0``... or ``cpu``).
        loadgen_dir: LoadGen's summary/detail logs.
        power_begin_ns: LoadGen's ``power_begin`` (UTC ns, ms resolution), if logged.
        power_end_ns: LoadGen's ``power_end``.
        window_disagreement_ms: the largest |LoadGen edge - our edge| (first issue, last
            completion), compared on the wall clock; above 5 ms it is also in ``problems``.
        validity: ``VALID`` / ``INVALID`` as LoadGen says (``UNKNOWN`` when it did not).
        loadgen: headline figures from the detail log (``samples_per_second``,
            ``latency_ns`` percentiles, ``result_*``, settings, errors).
        problems: what went wrong or looks doubtful, one line each.
        mlperf: what MLPerf's checker reads of the run's detail log (None: unreadable).
        degraded: requests or inferences failed during the run: its figures cover only what
            completed, and the result is ``degraded``.
        generation: a generative run's phase and token logs, on the session clock.
    """

    queries: QueryLog
    per_device: dict[str, QueryLog]
    loadgen_dir: Path
    power_begin_ns: int | None
    power_end_ns: int | None
    window_disagreement_ms: float | None
    validity: str
    loadgen: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    mlperf: LoadgenRun | None = None
    degraded: bool = False
    generation: GenerationLog | None = None
