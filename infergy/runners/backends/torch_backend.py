"""PyTorch backend: the built-in ResNet-50 on one CUDA device, as fast as eager torch gets.

Options (``WorkloadConfig``): fp32/fp16/bf16, ``channels_last`` (NHWC: the tensor cores'
layout for convolutions, +45 % on an H100 per the issue's reference figures), ``cuda_graphs``
(one graph per worker and per fixed batch size -- powers of two up to the batch -- captured at
load; a smaller batch is padded up to the next size, so a replay costs one launch instead of
~160 kernel launches), and ``compile`` (``torch.compile(mode="max-autotune")``; inductor's
artifacts are cached under ``cache_dir/torchinductor`` -- unless ``TORCHINDUCTOR_CACHE_DIR``
is already set, which wins -- so only the first run pays the minutes of autotuning (H100:
332 s cold, 24 s from the cache); it makes its own CUDA graphs, so ours are skipped then.
``describe()`` names the cache directory actually used).

Each worker has its own CUDA stream and input tensor; ``infer`` synchronises that stream, so
it returns when the outputs are complete. int8 is refused (use the TensorRT backend).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from infergy.errors import DeviceOutOfMemoryError, ModelError, PrecisionError, WorkloadError
from infergy.runners.backends.base import Limits, batch_sizes_for, padded_batch
from infergy.runners.models import RESNET_INPUT, ModelSpec, build_resnet50
from infergy.runners.types import WorkloadConfig

WARMUP_ITERS = 3


def import_torch() -> Any:
    """``import torch``, or a clear error."""
    try:
        import torch  # noqa: PLC0415 (optional/heavy library: imported when used)
    except ImportError as err:
        msg = f"PyTorch is not importable: {err}"
        raise WorkloadError(msg, hint="pip install 'infergy[torch]' (a CUDA build)") from err
    return torch


def torch_dtype(
    torch: Any,
    precision: str,
    device: Any,
    *,
    runner: str = "the torch backend",
    hint: str = "use --backend tensorrt for int8",
) -> Any:
    """The torch dtype of ``precision`` on ``device``; bf16 only where the GPU runs it."""
    if precision == "fp32":
        return torch.float32
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        if device.type == "cuda":
            with torch.cuda.device(device):
                if not torch.cuda.is_bf16_supported():
                    name = torch.cuda.get_device_name(device)
                    msg = f"{name} cannot run bf16"
                    raise PrecisionError(msg, hint="use --precision fp16")
        return torch.bfloat16
    msg = f"{runner} runs fp32, fp16 or bf16, not {precision}"
    raise PrecisionError(msg, hint=hint)


def _params_sha256(model: Any) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class TorchBackend:
    """The built-in ResNet-50 on CUDA device ``gpu`` (see the module docstring)."""

    def __init__(self, cfg: WorkloadConfig, spec: ModelSpec, gpu: int) -> None:
        self.cfg = cfg
        self.spec = spec
        self.gpu = gpu
        self.device = f"gpu{gpu}"
        self.batch_size = cfg.batch_size
        self.workers = cfg.workers_per_device
        self._torch: Any = None
        self._dev: Any = None
        self._model: Any = None
        self._inputs: list[Any] = []
        self._streams: list[Any] = []
        self._graphs: list[dict[int, Any]] = []
        self._fixed: tuple[int, ...] = ()
        self._sha = ""

    def load(self) -> None:
        """Build the model, make inputs, capture graphs; OOM reports the largest batch."""
        if self.cfg.compile:
            # Before torch is imported: inductor writes its default into the environment the
            # first time anything asks for its cache directory, and that default would win.
            cache = self.cfg.resolved_cache_dir / "torchinductor"
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache))
        torch = self._torch = import_torch()
        if not torch.cuda.is_available() or self.gpu >= torch.cuda.device_count():
            seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
            msg = f"gpu{self.gpu} is not visible to PyTorch ({seen} CUDA device(s))"
            raise WorkloadError(msg, hint="check --gpus, CUDA_VISIBLE_DEVICES and the driver")
        if self.spec.name != "resnet50":
            msg = f"the torch backend has no built-in model {self.spec.name!r}"
            raise ModelError(msg, hint="use --model resnet50")
        self._dev = torch.device("cuda", self.gpu)
        dtype = torch_dtype(torch, self.cfg.precision, self._dev)
        torch.backends.cudnn.benchmark = True
        model = build_resnet50(torch, self.cfg.seed).eval()
        self._sha = _params_sha256(model)
        fmt = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        try:
            self._model = model.to(self._dev, dtype).to(memory_format=fmt)
            if self.cfg.compile:
                self._model = torch.compile(self._model, mode="max-autotune")
            self._prepare(dtype, fmt)
        except torch.cuda.OutOfMemoryError as err:
            largest = self._largest_fitting(dtype, fmt)
            self.close()
            msg = f"out of GPU memory on gpu{self.gpu} at batch {self.batch_size}"
            hint = (f"use --batch-size {largest} (the largest that fits)" if largest
                    else "no batch fits: free the GPU or use a smaller model")  # fmt: skip
            raise DeviceOutOfMemoryError(msg, hint=hint, largest_batch=largest) from err

    def _prepare(self, dtype: Any, fmt: Any) -> None:
        torch = self._torch
        use_graphs = self.cfg.cuda_graphs and not self.cfg.compile
        self._fixed = batch_sizes_for(self.batch_size) if use_graphs else ()
        shape = (self.batch_size, *RESNET_INPUT)
        gen = torch.Generator(device=self._dev).manual_seed(self.cfg.seed)
        for _ in range(self.workers):
            x = torch.randn(shape, device=self._dev, dtype=dtype, generator=gen)
            self._inputs.append(x.contiguous(memory_format=fmt))
            self._streams.append(torch.cuda.Stream(self._dev))
        with torch.inference_mode():
            for w in range(self.workers):
                s, x = self._streams[w], self._inputs[w]
                with torch.cuda.stream(s):
                    for _ in range(WARMUP_ITERS):  # cudnn autotuning, lazy init, compile
                        self._model(x)
                s.synchronize()
                self._graphs.append(self._capture(s, x) if use_graphs else {})

    def _capture(self, stream: Any, x: Any) -> dict[int, Any]:
        torch = self._torch
        graphs: dict[int, Any] = {}
        pool = torch.cuda.graph_pool_handle()  # one pool per worker: its graphs never overlap
        for b in sorted(self._fixed, reverse=True):  # largest first: the pool fits the rest
            with torch.cuda.stream(stream):
                self._model(x[:b])  # warm the shape (cudnn picks its algorithms outside capture)
            stream.synchronize()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=pool, stream=stream, capture_error_mode="thread_local"):
                self._model(x[:b])
            graphs[b] = g
        stream.synchronize()
        return graphs

    def _largest_fitting(self, dtype: Any, fmt: Any) -> int | None:
        """Halve the batch until an eager forward (and a graph, if asked) fits."""
        torch = self._torch
        self._release()
        if self._model is None:  # the weights themselves did not fit
            return None
        b = self.batch_size // 2
        while b >= 1:
            try:
                self.batch_size = b
                self._prepare(dtype, fmt)
                return b
            except torch.cuda.OutOfMemoryError:
                self._release()
                b //= 2
        return None

    def infer(self, n: int, worker: int = 0) -> None:
        """Run ``n`` samples on worker ``worker``'s stream and wait for them."""
        torch, s = self._torch, self._streams[worker]
        if self._fixed:
            g = self._graphs[worker][padded_batch(n, self._fixed)]
            with torch.cuda.stream(s):
                g.replay()
        else:
            with torch.inference_mode(), torch.cuda.stream(s):
                self._model(self._inputs[worker][:n])
        s.synchronize()

    def limits(self) -> Limits:
        """Batch limit, sample shape, captured batch sizes, memory held."""
        mem = None if self._torch is None else int(self._torch.cuda.memory_reserved(self._dev))
        return Limits(self.batch_size, RESNET_INPUT, self._fixed, mem)

    def describe(self) -> dict[str, Any]:
        """torch/CUDA/cuDNN versions, model and parameter hash, options, device name."""
        torch = self._torch
        versions: dict[str, str] = {}
        name = None
        if torch is not None:
            import torchvision  # noqa: PLC0415 (optional/heavy library: imported when used)

            versions = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                        "cuda": str(torch.version.cuda),
                        "cudnn": str(torch.backends.cudnn.version())}  # fmt: skip
            name = torch.cuda.get_device_name(self._dev) if self._dev is not None else None
        return {
            "backend": "torch", "versions": versions, "model": "resnet50",
            "model_sha256": self._sha, "weights": "random (no accuracy claims)",
            "precision": self.cfg.precision, "device": self.device, "device_name": name,
            "channels_last": self.cfg.channels_last, "cuda_graphs": bool(self._fixed),
            "graph_batches": list(self._fixed), "compile": self.cfg.compile,
            "inductor_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR") if self.cfg.compile
            else None, "batch_size": self.batch_size,
        }  # fmt: skip

    def _release(self) -> None:
        self._graphs, self._inputs, self._streams = [], [], []
        if self._torch is not None:
            self._torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop graphs, inputs and the model; return the memory to the driver."""
        self._model = None
        self._release()
