"""TensorRT backend: build (or load a cached) plan, run it on CUDA streams, one context per worker.

Written against the TensorRT 10/11 Python API (``tensors`` API: ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``). Device memory, streams and CUDA graphs come from
PyTorch (``torch.cuda.Stream.cuda_stream`` is the raw handle TensorRT takes), and so do the
GPU's identity for the plan cache and the int8 calibrator's device batches: the backend needs
PyTorch, which the ``[tensorrt]`` extra installs with it. (Without it, the CUDA runtime's own
bindings would have to do all of that: not done.)

Build path (full ``tensorrt`` only): ONNX -> ``OnnxParser`` -> one optimization profile
``(1, batch, batch)`` on the batch axis -> fp32 / fp16 (``BuilderFlag.FP16``) / int8
(``BuilderFlag.INT8`` with an entropy calibrator over the user's ``calibration_data``
(:mod:`infergy.runners.calib_data`), else over random inputs of the model's shape, reported
as a problem: the scales then only serve performance, not accuracy) ->
``build_serialized_network`` -> the plan cache (:mod:`.trt_plan`; int8 keys include the
data's hash). Runtime path: the plan is checked against this runtime
and GPU before deserialization, ``engine_host_code_allowed`` is set for version-compatible
plans (the lean runtime), and each worker gets its own execution context, stream and
buffers, plus optional CUDA graphs per fixed batch.

What was executed where is stated in README/BENCHMARKS: on the development machine only the
plan key/sidecar checks and the import/error mapping run (the builder cannot be installed and
the lean runtime segfaults without a GPU).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infergy.errors import DeviceOutOfMemoryError, ModelError, PrecisionError, WorkloadError
from infergy.runners.backends.base import Limits, batch_sizes_for, padded_batch
from infergy.runners.backends.trt_plan import (
    PlanKey,
    check_plan,
    find_trt_module,
    gpu_identity,
    import_trt,
    read_sidecar,
    write_plan,
)
from infergy.runners.calib_data import GENERATED, CalibrationSet, calibration_identity
from infergy.runners.models import ModelSpec
from infergy.runners.types import WorkloadConfig

WORKSPACE_BYTES = 4 << 30
CALIBRATION_BATCHES = 8


def _torch() -> Any:
    """PyTorch, which this backend needs (see the module docstring), or a clear error."""
    try:
        import torch  # noqa: PLC0415 (optional/heavy library: imported when used)
    except ImportError as err:
        msg = (
            "the TensorRT backend needs PyTorch (its GPU buffers, CUDA streams and CUDA graphs"
            f" are PyTorch's), and PyTorch is not importable: {err}"
        )
        hint = "pip install 'infergy[tensorrt]' (TensorRT's lean runtime and PyTorch with CUDA)"
        raise WorkloadError(msg, hint=hint) from err
    return torch


class _Logger:
    """Collects TensorRT's error messages so they end up in the raised error."""

    def __init__(self, trt: Any) -> None:
        outer = self
        self.errors: list[str] = []

        class Logger(trt.ILogger):  # type: ignore[misc]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                if severity <= trt.ILogger.Severity.ERROR:
                    outer.errors.append(msg)

        self.logger = Logger()


GENERATED_CALIBRATION_PROBLEM = (
    "int8 calibration used generated (random) inputs, not supplied data: the int8 scales fit "
    "no real input distribution (performance figures only; give --calibration-data)"
)


def build_plan(
    trt: Any,
    torch: Any,
    onnx: Path,
    precision: str,
    profile: tuple[int, int, int],
    *,
    calibration: CalibrationSet | None = None,
) -> bytes:
    """Build a serialized engine from an ONNX file (full TensorRT only).

    Raises:
        ModelError: the ONNX file does not parse, the calibration data does not fit the
            network's input, or the build fails.
        PrecisionError: the GPU/TensorRT cannot do the precision asked.
    """
    log = _Logger(trt)
    builder = trt.Builder(log.logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10+
    parser = trt.OnnxParser(network, log.logger)
    if not parser.parse_from_file(str(onnx)):
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        msg = f"TensorRT cannot parse {onnx.name}: {'; '.join(errs)[:400]}"
        raise ModelError(msg, hint="check the ONNX file (opset, unsupported ops)")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    inp = network.get_input(0)
    sample = tuple(int(d) for d in inp.shape[1:])
    prof = builder.create_optimization_profile()
    lo, opt, hi = profile
    prof.set_shape(inp.name, (lo, *sample), (opt, *sample), (hi, *sample))
    config.add_optimization_profile(prof)
    calibrator = None
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        if not hasattr(trt, "IInt8EntropyCalibrator2"):
            msg = f"TensorRT {trt.__version__} has no implicit int8 calibration"
            raise PrecisionError(
                msg, hint="give an explicitly quantized (Q/DQ) ONNX model with --precision fp16"
            )
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers int8 cannot take fall back to fp16
        if calibration is not None:
            calibration.check_sample_shape(sample, onnx.name)
        calibrator = _calibrator(trt, torch, (opt, *sample), _np_dtype(trt, inp.dtype),
                                 calibration)  # fmt: skip
        config.int8_calibrator = calibrator
        config.set_calibration_profile(prof)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        msg = f"TensorRT failed to build {onnx.name} ({precision}): {'; '.join(log.errors)[:400]}"
        raise ModelError(msg, hint="try another precision or a smaller batch")
    return bytes(plan)


def _np_dtype(trt: Any, dt: Any) -> Any:
    """The numpy type of a TensorRT input (float32 when TensorRT cannot say)."""
    try:
        return trt.nptype(dt)
    except (TypeError, AttributeError):
        return "float32"


def _calibrator(
    trt: Any, torch: Any, shape: tuple[int, ...], dtype: Any, data: CalibrationSet | None
) -> Any:
    """An entropy calibrator over ``data`` in batches of ``shape[0]``, else random inputs.

    Random inputs are deterministic and give scales that fit no real input (accuracy is not
    claimed; the backend reports it as a problem).
    """

    class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.current: Any = None  # the device batch TensorRT reads (kept alive until next)
            if data is None:
                gen = torch.Generator(device="cuda").manual_seed(0)
                self.data = torch.randn(shape, device="cuda", generator=gen)
                self.left = CALIBRATION_BATCHES
            else:
                self.source = data.batches(int(shape[0]), dtype)

        def get_batch_size(self) -> int:
            return int(shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:
            del names
            if data is None:
                if self.left == 0:
                    return None
                self.left -= 1
                return [int(self.data.data_ptr())]
            batch = next(self.source, None)
            if batch is None:
                self.current = None
                return None
            self.current = torch.from_numpy(batch).to("cuda")  # synchronous host-to-device copy
            return [int(self.current.data_ptr())]

        def read_calibration_cache(self) -> None:
            return None  # the plan cache keyed by the data's hash is the cache

        def write_calibration_cache(self, cache: Any) -> None:
            del cache

    return Calibrator()


class TensorRTBackend:
    """A TensorRT engine on CUDA device ``gpu`` (see the module docstring)."""

    def __init__(self, cfg: WorkloadConfig, spec: ModelSpec, gpu: int) -> None:
        self.cfg = cfg
        self.spec = spec
        self.gpu = gpu
        self.device = f"gpu{gpu}"
        self.batch_size = cfg.batch_size
        self._trt: Any = None
        self._torch: Any = None
        self._engine: Any = None
        self._workers: list[dict[str, Any]] = []
        self._fixed: tuple[int, ...] = ()
        self._plan_path: Path | None = None
        self._notes: list[str] = []
        self._gpu_name = ""
        self._input = ""
        self._problems: list[str] = []
        self._calibration: dict[str, Any] | None = None

    def load(self) -> None:
        """Get a plan (cache, build or the user's), deserialize it, make contexts and buffers."""
        torch = self._torch = _torch()
        name, cc = gpu_identity(torch, self.gpu)  # before TensorRT: see trt_plan.gpu_identity
        self._gpu_name = name
        if self.spec.kind == "plan":
            assert self.spec.path is not None
            if self.cfg.calibration_data is not None:
                self._problems.append(
                    f"calibration data {self.cfg.calibration_data} unused: the plan "
                    f"{self.spec.name} was built beforehand"
                )
            trt = self._trt = import_trt(need_builder=False)
            self._notes += check_plan(read_sidecar(self.spec.path), trt.__version__, cc)
            path = self.spec.path
        else:
            path = self._cached_or_built(name, cc)
        self._plan_path = path
        try:
            with torch.cuda.device(self.gpu):
                self._deserialize(path.read_bytes())
                self._make_workers()
        except torch.cuda.OutOfMemoryError as err:
            self.close()
            msg = f"out of GPU memory on gpu{self.gpu} at batch {self.batch_size}"
            hint = "use a smaller --batch-size (TensorRT's largest fitting batch is not searched)"
            raise DeviceOutOfMemoryError(msg, hint=hint, largest_batch=None) from err

    def _cached_or_built(self, gpu_name: str, cc: str) -> Path:
        assert self.spec.path is not None and self.spec.sha256 is not None
        module = find_trt_module()
        version = "unknown"
        if module is not None:
            self._trt = import_trt(need_builder=False)
            version = self._trt.__version__
        calibrated_on, calibration = calibration_identity(self.cfg)  # checks the data first
        if calibrated_on == GENERATED:
            self._problems.append(GENERATED_CALIBRATION_PROBLEM)
        if calibration is not None:
            self._calibration = calibration.describe()
        key = PlanKey(self.spec.sha256, version, gpu_name, cc, self.cfg.precision,
                      (1, self.batch_size, self.batch_size),
                      calibration=calibrated_on)  # fmt: skip
        path = key.plan_path(self.cfg.resolved_cache_dir)
        if path.exists() and read_sidecar(path) == key:
            self._notes.append(f"plan from cache {path.name}")
            return path
        trt = self._trt = import_trt(need_builder=True)  # raises when only the lean runtime
        with self._torch.cuda.device(self.gpu):
            data = build_plan(trt, self._torch, self.spec.path, self.cfg.precision, key.profile,
                              calibration=calibration)  # fmt: skip
        write_plan(path, data, key)
        self._notes.append(f"plan built and cached as {path.name}")
        return path

    def _deserialize(self, data: bytes) -> None:
        trt = self._trt
        log = _Logger(trt)
        self._runtime = trt.Runtime(log.logger)
        self._runtime.engine_host_code_allowed = (
            True  # version-compatible plans carry the lean runtime
        )
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            msg = f"TensorRT {trt.__version__} cannot load this plan: {'; '.join(log.errors)[:400]}"
            raise ModelError(msg, hint="rebuild the plan for this TensorRT version and GPU")

    def _make_workers(self) -> None:
        trt, torch, engine = self._trt, self._torch, self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            msg = f"the engine has {len(inputs)} inputs {inputs}; infergy drives one-input models"
            raise ModelError(msg)
        self._input = inputs[0]
        lo, _opt, hi = (tuple(s) for s in engine.get_tensor_profile_shape(self._input, 0))
        if self.batch_size > hi[0] or self.batch_size < lo[0]:
            msg = f"the plan's profile takes batches {lo[0]}..{hi[0]}, not {self.batch_size}"
            raise WorkloadError(msg, hint=f"use --batch-size <= {hi[0]} or rebuild the plan")
        sample = tuple(int(d) for d in hi[1:])
        use_graphs = self.cfg.cuda_graphs
        self._fixed = batch_sizes_for(self.batch_size) if use_graphs else ()
        for _ in range(self.cfg.workers_per_device):
            ctx = engine.create_execution_context()
            stream = torch.cuda.Stream(self.gpu)
            buffers = {}
            for n in names:
                shape = (self.batch_size, *sample) if n == self._input else None
                if shape is None:
                    ctx.set_input_shape(self._input, (self.batch_size, *sample))
                    shape = tuple(ctx.get_tensor_shape(n))
                dtype = _torch_dtype(torch, trt, engine.get_tensor_dtype(n))
                buffers[n] = torch.empty(shape, dtype=dtype, device=f"cuda:{self.gpu}")
                ctx.set_tensor_address(n, int(buffers[n].data_ptr()))
            worker = {"ctx": ctx, "stream": stream, "buffers": buffers, "sample": sample,
                      "graphs": {}}  # fmt: skip
            if use_graphs:
                worker["graphs"] = self._capture(worker)
            self._workers.append(worker)

    def _enqueue(self, worker: dict[str, Any], n: int) -> None:
        ctx, stream = worker["ctx"], worker["stream"]
        ctx.set_input_shape(self._input, (n, *worker["sample"]))
        if not ctx.execute_async_v3(stream.cuda_stream):
            msg = f"TensorRT execute_async_v3 failed on gpu{self.gpu} (batch {n})"
            raise RuntimeError(msg)

    def _capture(self, worker: dict[str, Any]) -> dict[int, Any]:
        torch, stream = self._torch, worker["stream"]
        graphs = {}
        for b in self._fixed:
            self._enqueue(worker, b)  # once outside capture: TensorRT allocates lazily
            stream.synchronize()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, stream=stream, capture_error_mode="thread_local"):
                self._enqueue(worker, b)
            graphs[b] = g
        stream.synchronize()
        return graphs

    def infer(self, n: int, worker: int = 0) -> None:
        """Run ``n`` samples on worker ``worker``'s context and stream, then wait for them."""
        w = self._workers[worker]
        if self._fixed:
            with self._torch.cuda.stream(w["stream"]):
                w["graphs"][padded_batch(n, self._fixed)].replay()
        else:
            self._enqueue(w, n)
        w["stream"].synchronize()

    def limits(self) -> Limits:
        """Batch limit, sample shape, fixed (graph) batches, device memory of the engine."""
        sample = self._workers[0]["sample"] if self._workers else ()
        mem = None if self._engine is None else int(self._engine.device_memory_size)
        return Limits(self.batch_size, sample, self._fixed, mem)

    def describe(self) -> dict[str, Any]:
        """TensorRT version and flavour, plan file, model hash, precision, device."""
        versions = {
            "tensorrt": getattr(self._trt, "__version__", "unknown"),
            "tensorrt_module": getattr(self._trt, "__name__", "none"),
        }
        return {
            "backend": "tensorrt",
            "versions": versions,
            "model": self.spec.name, "model_sha256": self.spec.sha256,
            "plan": None if self._plan_path is None else str(self._plan_path),
            "precision": self.cfg.precision, "device": self.device, "device_name": self._gpu_name,
            "cuda_graphs": bool(self._fixed), "contexts": len(self._workers), "notes": self._notes,
            "calibration_data": self._calibration, "problems": self._problems,
        }  # fmt: skip

    def close(self) -> None:
        """Drop contexts, buffers, graphs and the engine."""
        self._workers = []
        self._engine = None
        if self._torch is not None:
            self._torch.cuda.empty_cache()


def _torch_dtype(torch: Any, trt: Any, dt: Any) -> Any:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int8: torch.int8,
             trt.int32: torch.int32, trt.bool: torch.bool}  # fmt: skip
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if dt not in table:
        msg = f"the engine has a tensor of type {dt} that infergy cannot allocate"
        raise ModelError(msg)
    return table[dt]
