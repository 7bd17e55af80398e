"""Backends: one model on one device behind the :class:`~.base.Backend` Protocol.

``create_backend`` imports the backend's library only when it is used, so a machine without
torch or TensorRT runs the onnxruntime backend and imports nothing else. ``sim`` sleeps a
simulated GPU's batch latency (:mod:`.sim`, SIMULATED). A generative workload (``--workload
llm``) gets a :class:`~.gen_base.GenerativeBackend`: a decoder in PyTorch (:mod:`.torch_llm`)
or its simulated steps (:mod:`.sim_llm`).
"""

from __future__ import annotations

from pathlib import Path

from infergy.errors import ModelError, WorkloadError
from infergy.runners.backends.base import Backend, Limits, batch_sizes_for, padded_batch
from infergy.runners.backends.gen_base import generation_spec
from infergy.runners.models import ModelSpec, materialize_tiny
from infergy.runners.types import WorkloadConfig

__all__ = ["Backend", "Limits", "batch_sizes_for", "create_backend", "padded_batch"]


def _onnx_for(cfg: WorkloadConfig, spec: ModelSpec, cache_dir: Path) -> ModelSpec:
    """An ONNX file for onnxruntime/TensorRT: built-ins are generated or exported first."""
    if spec.path is not None:
        return spec
    if spec.name == "tiny":
        return materialize_tiny(cache_dir, fp16=cfg.precision == "fp16" and cfg.backend ==
                                "onnxruntime", seed=cfg.seed)  # fmt: skip
    from infergy.runners.backends.torch_backend import import_torch  # noqa: PLC0415
    from infergy.runners.models import export_resnet50_onnx  # noqa: PLC0415

    return export_resnet50_onnx(import_torch(), cache_dir, seed=cfg.seed)


def create_generator(cfg: WorkloadConfig, spec: ModelSpec, gpu: int | None) -> Backend:
    """A generative backend (``--workload llm``) on ``gpu`` (None: the CPU), not yet loaded.

    Raises:
        WorkloadError: no generative backend of that name.
    """
    gen = generation_spec(cfg)
    if cfg.backend == "sim":
        from infergy.runners.backends.sim_llm import SimulatedGenerator  # noqa: PLC0415

        return SimulatedGenerator(gen, spec.name, gpu)
    if cfg.backend == "torch":
        from infergy.runners.backends.torch_llm import TorchGenerator  # noqa: PLC0415

        return TorchGenerator(gen, gpu)
    msg = f"the llm workload runs on --backend torch or sim, not {cfg.backend}"
    raise WorkloadError(msg, hint="a running server is --backend openai --endpoint URL")


def _special_backend(cfg: WorkloadConfig, spec: ModelSpec, gpu: int | None) -> Backend:
    """A running server's backend, or a generative one."""
    if cfg.generative:
        return create_generator(cfg, spec, gpu)
    from infergy.runners.network.backend import NetworkBackend  # noqa: PLC0415

    return NetworkBackend(cfg)


def create_backend(cfg: WorkloadConfig, spec: ModelSpec, gpu: int | None) -> Backend:
    """A backend for ``cfg.backend`` on ``gpu`` (None: the CPU), not yet loaded.

    Raises:
        WorkloadError: the backend cannot run on that device.
        ModelError: the model cannot be turned into what the backend needs.
    """
    if cfg.network or cfg.generative:
        return _special_backend(cfg, spec, gpu)
    cache_dir = cfg.resolved_cache_dir
    if cfg.backend == "sim":
        from infergy.runners.backends.sim import SimulatedBackend  # noqa: PLC0415

        return SimulatedBackend(cfg, spec, gpu)
    if cfg.backend == "onnxruntime":
        from infergy.runners.backends.onnxrt import OnnxRuntimeBackend  # noqa: PLC0415

        return OnnxRuntimeBackend(
            _onnx_for(cfg, spec, cache_dir), precision=cfg.precision, batch_size=cfg.batch_size,
            gpu=gpu, workers=cfg.workers_per_device, intra_op_threads=cfg.intra_op_threads,
            seed=cfg.seed,
        )  # fmt: skip
    if gpu is None:
        msg = f"the {cfg.backend} backend runs on NVIDIA GPUs; no GPU was given"
        raise WorkloadError(msg, hint="pass --gpus 0 (or use --backend onnxruntime on the CPU)")
    if cfg.backend == "torch":
        from infergy.runners.backends.torch_backend import TorchBackend  # noqa: PLC0415

        if spec.kind != "builtin":
            msg = f"the torch backend runs the built-in models, not {spec.name}"
            raise ModelError(msg, hint="use --backend onnxruntime or tensorrt for ONNX files")
        return TorchBackend(cfg, spec, gpu)
    from infergy.runners.backends.tensorrt import TensorRTBackend  # noqa: PLC0415

    if spec.kind == "plan":
        return TensorRTBackend(cfg, spec, gpu)
    return TensorRTBackend(cfg, _onnx_for(cfg, spec, cache_dir), gpu)
