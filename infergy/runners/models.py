"""Models: the built-in ones (no downloads) and user files, resolved to one :class:`ModelSpec`.

Built-in:

- ``tiny``: a small convolutional network generated with ``onnx.helper`` (input
  ``[batch, 3, 32, 32]``, two 3x3 convolutions, global pooling, a 32->10 dense layer) with
  deterministic weights from the seed. A batch-1 call takes ~0.1 ms on one CPU core, so a
  20-s LoadGen run in CI is cheap. Exists in fp32 and fp16.
- ``resnet50``: torchvision's ResNet-50 with random weights (power and throughput do not
  depend on the weights; no accuracy is claimed). Built by the torch backend; exported to
  ONNX for TensorRT/onnxruntime by :func:`export_resnet50_onnx`.

User models are paths to an ONNX file or a serialized TensorRT plan (``.plan``/``.engine``).

Generative decoders (``--workload llm``; ``tiny``, ``llama-1b-shape``, ``llama-8b-shape``) are
built from their dimensions (:mod:`infergy.core.llm`) with random weights by the torch backend.

The simulated backend (``sim``) runs no model: its "model" is the simulated GPU part whose
batch latency it sleeps (``h200``, ``t4``, ``l4``, ``a2``; :mod:`infergy.core.gpu_model`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infergy.core.gpu_model import PARTS
from infergy.core.llm import SHAPES
from infergy.errors import ModelError
from infergy.runners.types import NETWORK_BACKENDS

BUILTIN = ("tiny", "resnet50")
DEFAULT_MODEL = {
    "onnxruntime": "tiny",
    "torch": "resnet50",
    "tensorrt": "resnet50",
    "sim": "h200",
}
ONNX_SUFFIXES = (".onnx",)
PLAN_SUFFIXES = (".plan", ".engine", ".trt")
TINY_INPUT = (3, 32, 32)
TINY_OPSET = 17
TINY_IR_VERSION = 8  # readable by older onnxruntime and TensorRT parsers too
RESNET_INPUT = (3, 224, 224)


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model.

    Attributes:
        name: ``tiny``, ``resnet50``, the file's name, or a simulated part (``h200``).
        kind: ``builtin``, ``onnx``, ``plan``, ``simulated``, ``served`` (a network
            backend's model), or ``llm`` (a built-in decoder shape, :mod:`infergy.core.llm`).
        path: the file, for ``onnx`` and ``plan``.
        sha256: the file's hash (built-ins: filled in once generated).
    """

    name: str
    kind: str
    path: Path | None = None
    sha256: str | None = None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def resolve_model(backend: str, model: str) -> ModelSpec:
    """Turn ``WorkloadConfig.model`` into a :class:`ModelSpec`.

    Raises:
        ModelError: an unknown built-in name, a missing/unreadable file, an unknown suffix.
    """
    spec = check_model(backend, model)
    if spec.path is None:
        return spec
    try:
        digest = sha256_file(spec.path)
    except OSError as err:
        msg = f"model {str(spec.path)!r} cannot be read: {err.strerror or err}"
        raise ModelError(msg, hint="check the file's permissions") from err
    return ModelSpec(name=spec.name, kind=spec.kind, path=spec.path, sha256=digest)


def check_model(backend: str, model: str) -> ModelSpec:
    """What :func:`resolve_model` checks, without reading the file (a session's first check).

    Raises:
        ModelError: an unknown built-in name, a missing or unreadable file, an unknown suffix,
            a TensorRT plan for another backend.
    """
    if backend in NETWORK_BACKENDS:  # the server holds the model: a name, not a file
        return ModelSpec(name=model, kind="served")
    name = DEFAULT_MODEL[backend] if model == "auto" else model
    if backend == "sim":
        if name not in PARTS:
            msg = f"the sim backend simulates a GPU part, not {name!r}"
            raise ModelError(msg, hint=f"use --model {' or '.join(PARTS)} (SIMULATED)")
        return ModelSpec(name=name, kind="simulated")
    if name in BUILTIN:
        return ModelSpec(name=name, kind="builtin")
    if name in SHAPES and backend == "torch":  # a generative decoder's dimensions
        return ModelSpec(name=name, kind="llm")
    path = Path(name).expanduser()
    builtins = ", ".join(BUILTIN)
    hint = f"give a path to an .onnx file or a TensorRT .plan, or a built-in model ({builtins})"
    if not path.exists():
        msg = f"model {name!r} not found (not a built-in model, and no such file)"
        raise ModelError(msg, hint=hint)
    if not path.is_file():
        msg = f"model {str(path)!r} is not a file"
        raise ModelError(msg, hint=hint)
    suffix = path.suffix.lower()
    if suffix not in ONNX_SUFFIXES + PLAN_SUFFIXES:
        msg = f"model {path.name!r}: unknown file type {suffix or '(no suffix)'!r}"
        raise ModelError(msg, hint=hint)
    if not os.access(path, os.R_OK):
        msg = f"model {str(path)!r} cannot be read"
        raise ModelError(msg, hint="check the file's permissions")
    kind = "onnx" if suffix in ONNX_SUFFIXES else "plan"
    if kind == "plan" and backend != "tensorrt":
        msg = f"{path.name} is a TensorRT plan; the {backend} backend needs an ONNX model"
        raise ModelError(msg, hint="use --backend tensorrt, or give the .onnx file")
    return ModelSpec(name=path.name, kind=kind, path=path)


def tiny_onnx_bytes(*, fp16: bool = False, seed: int = 0) -> bytes:
    """The built-in ``tiny`` model as serialized ONNX (deterministic for a given seed)."""
    import onnx  # noqa: PLC0415 (optional/heavy library: imported when used)
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    dtype = np.float16 if fp16 else np.float32
    elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT

    def weight(name: str, *shape: int) -> Any:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        w = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        return numpy_helper.from_array(w.astype(dtype), name)

    inits = [
        weight("w1", 16, 3, 3, 3), numpy_helper.from_array(np.zeros(16, dtype), "b1"),
        weight("w2", 32, 16, 3, 3), numpy_helper.from_array(np.zeros(32, dtype), "b2"),
        weight("w3", 10, 32), numpy_helper.from_array(np.zeros(10, dtype), "b3"),
    ]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1] * 4,
                         strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["output"], transB=1),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "infergy_tiny",
        [helper.make_tensor_value_info("input", elem, ["batch", *TINY_INPUT])],
        [helper.make_tensor_value_info("output", elem, ["batch", 10])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", TINY_OPSET)], producer_name="infergy"
    )
    model.ir_version = TINY_IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    data: bytes = model.SerializeToString()
    return data


def materialize_tiny(cache_dir: Path, *, fp16: bool = False, seed: int = 0) -> ModelSpec:
    """Write the ``tiny`` model into the cache (once) and return it as an ONNX file spec."""
    data = tiny_onnx_bytes(fp16=fp16, seed=seed)
    digest = hashlib.sha256(data).hexdigest()
    path = cache_dir / "models" / f"tiny-{'fp16' if fp16 else 'fp32'}-{digest[:16]}.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a concurrent run never reads half a file
    return ModelSpec(name="tiny", kind="builtin", path=path, sha256=digest)


def build_resnet50(torch: Any, seed: int) -> Any:
    """Torchvision's ResNet-50 with random weights drawn from ``seed`` (fp32, on the CPU)."""
    try:
        import torchvision  # noqa: PLC0415 (optional/heavy library: imported when used)
    except ImportError as err:
        msg = f"the built-in resnet50 needs torchvision: {err}"
        hint = "pip install 'infergy[torch]' (torchvision matching your torch)"
        raise ModelError(msg, hint=hint) from err
    torch.manual_seed(seed)
    return torchvision.models.resnet50(weights=None)


def export_resnet50_onnx(torch: Any, cache_dir: Path, *, seed: int = 0) -> ModelSpec:
    """Export the built-in ResNet-50 (fp32, dynamic batch) to ONNX in the cache (once)."""
    path = cache_dir / "models" / f"resnet50-seed{seed}.onnx"
    if not path.exists():
        model = build_resnet50(torch, seed).eval()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        example = torch.randn(1, *RESNET_INPUT)
        with torch.no_grad():
            torch.onnx.export(
                model, (example,), str(tmp), input_names=["input"], output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=17,
                dynamo=False,
            )  # fmt: skip
        tmp.replace(path)
    return ModelSpec(name="resnet50", kind="builtin", path=path, sha256=sha256_file(path))
