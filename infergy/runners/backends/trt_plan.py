"""TensorRT plans: the cache key, the sidecar metadata, and the checks made before deserializing.

A serialized plan only runs with the TensorRT version and the GPU (compute capability) it
was built for -- unless it was built version-compatible, for the lean runtime. Deserializing
a mismatched plan fails inside TensorRT, and the lean runtime without a usable GPU segfaults
(libs.md), so every plan infergy builds gets a sidecar ``<plan>.json`` with what it was built
for, and :func:`check_plan` compares it with the runtime *before* TensorRT sees the bytes.

The cache key is (model sha256, TensorRT version, GPU name and compute capability,
precision, optimization profile, version-compatible flag, and for int8 what it was calibrated
on: the supplied data's sha256 or ``generated``): a change to any of them builds a new plan
instead of loading a wrong one.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infergy.errors import ModelError, PlanMismatchError, WorkloadError

TRT_MODULES = ("tensorrt", "tensorrt_lean", "tensorrt_lean_bindings")
"""The full package (builder + runtime) first, then the lean runtime (runtime only): the
``tensorrt-lean`` meta-package's ``tensorrt_lean``, or ``tensorrt_lean_bindings`` when only
the ``tensorrt-lean-cu13-{libs,bindings}`` wheels are installed (found on a GPU machine)."""


@dataclass(frozen=True)
class PlanKey:
    """Everything a plan depends on.

    Attributes:
        model_sha256: the ONNX model's hash.
        trt_version: TensorRT's version (``10.13.0.35``).
        gpu_name: the GPU's name (``NVIDIA H100 80GB HBM3``).
        compute_capability: ``9.0``.
        precision: ``fp32`` | ``fp16`` | ``int8``.
        profile: the dynamic-batch profile ``(min, opt, max)``.
        version_compatible: built with ``BuilderFlag.VERSION_COMPATIBLE`` (lean runtime).
        calibration: int8 only: the calibration data's sha256, or ``generated`` (random
            inputs); None for other precisions.
    """

    model_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: tuple[int, int, int]
    version_compatible: bool = False
    calibration: str | None = None

    def digest(self) -> str:
        """A stable short hash of the key (the plan's file name)."""
        d = asdict(self)
        if d["calibration"] is None:
            del d["calibration"]  # fp32/fp16 plans keep the names they were cached under
        text = json.dumps(d, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def plan_path(self, cache_dir: Path) -> Path:
        """``cache_dir/trt/<digest>.plan`` (its sidecar: the same name with ``.json``)."""
        return cache_dir / "trt" / f"{self.digest()}.plan"


def sidecar_path(plan: Path) -> Path:
    """The metadata file beside a plan."""
    return plan.with_suffix(".json")


def write_plan(plan: Path, data: bytes, key: PlanKey) -> None:
    """Write a plan and its sidecar atomically (a concurrent reader sees both or neither)."""
    plan.parent.mkdir(parents=True, exist_ok=True)
    for path, payload in ((plan, data), (sidecar_path(plan), _sidecar_bytes(key))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(payload)
        tmp.replace(path)


def _sidecar_bytes(key: PlanKey) -> bytes:
    d = asdict(key)
    d["profile"] = list(key.profile)
    return (json.dumps(d, indent=1, sort_keys=True) + "\n").encode()


def read_sidecar(plan: Path) -> PlanKey | None:
    """The key a plan was built with, or None when it has no (readable) sidecar."""
    try:
        d = json.loads(sidecar_path(plan).read_text())
        d["profile"] = tuple(int(x) for x in d["profile"])
        return PlanKey(**d)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _major_minor(version: str) -> tuple[int, ...]:
    parts = []
    for p in version.split(".")[:2]:
        try:
            parts.append(int(p))
        except ValueError:
            parts.append(-1)
    return tuple(parts)


def check_plan(built: PlanKey | None, trt_version: str, compute_capability: str) -> list[str]:
    """Refuse a plan that cannot run here; return warnings for what cannot be checked.

    Raises:
        PlanMismatchError: built for another TensorRT version (and not version-compatible
            with this newer runtime of the same major), or for another compute capability.
    """
    if built is None:
        return ["the plan has no infergy sidecar: its TensorRT version and GPU are unchecked"]
    hint = "rebuild the plan from the ONNX model (infergy builds and caches it: give the .onnx)"
    if built.compute_capability != compute_capability:
        msg = (f"the plan was built for compute capability {built.compute_capability} "
               f"({built.gpu_name}); this GPU is {compute_capability}")  # fmt: skip
        raise PlanMismatchError(msg, hint=hint)
    same = _major_minor(built.trt_version) == _major_minor(trt_version)
    if built.trt_version == trt_version or (same and not built.version_compatible):
        return [] if built.trt_version == trt_version else [
            f"plan built with TensorRT {built.trt_version}, running {trt_version} (same minor)"
        ]  # fmt: skip
    runtime_newer = _major_minor(trt_version) >= _major_minor(built.trt_version)
    same_major = _major_minor(trt_version)[0] == _major_minor(built.trt_version)[0]
    if built.version_compatible and runtime_newer and same_major:
        return [f"version-compatible plan from TensorRT {built.trt_version} on {trt_version}"]
    msg = f"the plan was built with TensorRT {built.trt_version}; this runtime is {trt_version}"
    raise PlanMismatchError(msg, hint=hint)


def find_trt_module() -> str | None:
    """``tensorrt`` (full), else ``tensorrt_lean``, else None -- without importing either."""
    return next((m for m in TRT_MODULES if importlib.util.find_spec(m) is not None), None)


def import_trt(need_builder: bool) -> Any:
    """Import TensorRT: the full package when a builder is needed, else either.

    Raises:
        WorkloadError: not installed, or only the lean runtime when a build is needed.
    """
    module = find_trt_module()
    if module is None:
        msg = "TensorRT is not installed"
        raise WorkloadError(
            msg, hint="pip install tensorrt (builder) or 'infergy[tensorrt]' (lean runtime)"
        )
    if need_builder and module != "tensorrt":
        msg = (
            "building a TensorRT engine from ONNX needs the full tensorrt package; "
            "only the lean runtime is installed"
        )
        raise ModelError(
            msg, hint="pip install tensorrt, or give a version-compatible .plan built elsewhere"
        )
    return importlib.import_module(module)


def gpu_identity(torch: Any, gpu: int) -> tuple[str, str]:
    """(name, compute capability) of CUDA device ``gpu``.

    Checked before TensorRT is touched: the lean runtime segfaults deserializing without a
    usable GPU (libs.md).

    Raises:
        WorkloadError: CUDA cannot see that GPU.
    """
    if not torch.cuda.is_available() or gpu >= torch.cuda.device_count():
        msg = f"gpu{gpu} is not visible to CUDA"
        raise WorkloadError(msg, hint="check --gpus, CUDA_VISIBLE_DEVICES and the driver")
    major, minor = torch.cuda.get_device_capability(gpu)
    return str(torch.cuda.get_device_name(gpu)), f"{major}.{minor}"
