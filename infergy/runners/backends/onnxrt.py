"""ONNX Runtime backend: the CPU default (``make run`` anywhere), CUDA when installed.

One ``InferenceSession`` per device; its ``run`` is thread-safe, so every worker of the device
calls it concurrently. On a GPU the CUDA execution provider is used (``onnxruntime-gpu``);
inputs live in host memory and are copied per call, as a plain ORT service does. The
TensorRT execution provider is not used: its engine build is slow and uncached here, and the
``tensorrt`` backend is the way to run TensorRT.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from typing import Any

import numpy as np

from infergy.errors import ModelError, PrecisionError, WorkloadError
from infergy.runners.backends.base import Limits
from infergy.runners.models import ModelSpec

_DTYPES = {"tensor(float)": ("fp32", np.float32), "tensor(float16)": ("fp16", np.float16)}


def ort_version() -> str:
    """The installed onnxruntime distribution's version ('onnxruntime' or '-gpu')."""
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


class OnnxRuntimeBackend:
    """An ONNX model in onnxruntime on the CPU or one CUDA device.

    Args:
        spec: the model (an ONNX file; built-ins are materialised before).
        precision: ``fp32`` or ``fp16`` (must match the model's input type).
        batch_size: the largest batch.
        gpu: CUDA device index, or None for the CPU.
        workers: how many threads call :meth:`infer` (distinct ``worker`` indices).
        intra_op_threads: ORT's intra-op threads (0: ORT's default).
        seed: input generator seed.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        precision: str,
        batch_size: int,
        gpu: int | None = None,
        workers: int = 1,
        intra_op_threads: int = 0,
        seed: int = 0,
    ) -> None:
        self.spec = spec
        self.precision = precision
        self.batch_size = batch_size
        self.gpu = gpu
        self.device = "cpu" if gpu is None else f"gpu{gpu}"
        self.workers = workers
        self.intra_op_threads = intra_op_threads
        self.seed = seed
        self._session: Any = None
        self._input_name = ""
        self._inputs: np.ndarray[Any, Any] = np.zeros(0)
        self._shape: tuple[int, ...] = ()
        self._providers: list[str] = []

    def _providers_for(self, ort: Any) -> list[Any]:
        if self.gpu is None:
            return ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            msg = f"onnxruntime {ort_version()} has no CUDA execution provider for gpu{self.gpu}"
            raise WorkloadError(msg, hint="install onnxruntime-gpu, or run on the CPU (no --gpus)")
        return [("CUDAExecutionProvider", {"device_id": self.gpu}), "CPUExecutionProvider"]

    def load(self) -> None:
        """Create the session, check the input and precision, make the inputs."""
        import onnxruntime as ort  # noqa: PLC0415 (optional/heavy library: imported when used)

        if self.precision not in ("fp32", "fp16"):
            msg = f"the onnxruntime backend runs fp32 or fp16 models, not {self.precision}"
            raise PrecisionError(msg, hint="use --backend tensorrt for int8, torch for bf16")
        if self.spec.path is None:
            msg = f"model {self.spec.name} has no ONNX file"
            raise ModelError(msg)
        so = ort.SessionOptions()
        if self.intra_op_threads:
            so.intra_op_num_threads = self.intra_op_threads
        so.log_severity_level = 3  # errors only: ORT's warnings go to the child's log anyway
        providers = self._providers_for(ort)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # provider fallback warnings are checked below
                self._session = ort.InferenceSession(str(self.spec.path), so, providers=providers)
        except Exception as err:  # ORT raises its own pybind classes (Fail, InvalidProtobuf...)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            msg = f"onnxruntime cannot load {self.spec.name}: {first[:300]}"
            raise ModelError(msg, hint="check that the file is a valid ONNX model") from err
        self._providers = list(self._session.get_providers())
        if self.gpu is not None and "CUDAExecutionProvider" not in self._providers:
            msg = f"onnxruntime fell back to {self._providers} for gpu{self.gpu}"
            raise WorkloadError(msg, hint="check the CUDA/cuDNN libraries onnxruntime-gpu needs")
        self._check_input()

    def _check_input(self) -> None:
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            msg = f"{self.spec.name} has {len(inputs)} inputs {names}; infergy drives one input"
            raise ModelError(msg, hint="export the model with a single input tensor")
        inp = inputs[0]
        kind = _DTYPES.get(inp.type)
        if kind is None:
            msg = f"{self.spec.name}: input {inp.name!r} has type {inp.type}, not float/float16"
            raise ModelError(msg, hint="infergy generates float inputs")
        if kind[0] != self.precision:
            msg = (
                f"{self.spec.name} takes {kind[0]} input, but precision {self.precision} was asked"
            )
            raise PrecisionError(msg, hint=f"use --precision {kind[0]}, or convert the model")
        shape = list(inp.shape)
        if not shape:
            msg = f"{self.spec.name}: input {inp.name!r} is a scalar"
            raise ModelError(msg)
        rest = shape[1:]
        if any(not isinstance(d, int) or d <= 0 for d in rest):
            msg = f"{self.spec.name}: input {inp.name!r} has dynamic non-batch dims {shape}"
            raise ModelError(msg, hint="export the model with a fixed sample shape")
        if isinstance(shape[0], int) and shape[0] < self.batch_size:
            msg = f"{self.spec.name} has a fixed batch of {shape[0]}; batch {self.batch_size} asked"
            raise WorkloadError(msg, hint=f"use --batch-size {shape[0]} or a dynamic-batch export")
        self._input_name = inp.name
        self._shape = tuple(int(d) for d in rest)
        rng = np.random.default_rng(self.seed)
        data = rng.standard_normal((self.batch_size, *self._shape), dtype=np.float32)
        self._inputs = np.ascontiguousarray(data.astype(kind[1]))

    def infer(self, n: int, worker: int = 0) -> None:
        """Run ``n`` samples; ``InferenceSession.run`` returns with host outputs (synchronous)."""
        del worker  # ORT's run is thread-safe; every worker shares the one session
        self._session.run(None, {self._input_name: self._inputs[:n]})

    def limits(self) -> Limits:
        """Any batch up to the configured one."""
        return Limits(max_batch=self.batch_size, sample_shape=self._shape)

    def describe(self) -> dict[str, Any]:
        """Versions, providers, model and device."""
        return {
            "backend": "onnxruntime",
            "onnxruntime": ort_version(),
            "providers": self._providers,
            "model": self.spec.name,
            "model_sha256": self.spec.sha256,
            "precision": self.precision,
            "device": self.device,
        }

    def close(self) -> None:
        """Drop the session."""
        self._session = None
