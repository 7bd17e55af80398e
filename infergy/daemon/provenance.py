"""Provenance of a session: software versions and the GPUs' identity and settings.

Read-only: power limits and clocks are read through the NVML meter's context, never set.
"""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infergy.daemon.meters import MeterSet

_PACKAGES = (
    ("numpy", "numpy"),
    ("loadgen", "mlcommons-loadgen"),
    ("onnxruntime", "onnxruntime"),
    ("torch", "torch"),
    ("tensorrt", "tensorrt-lean-cu13"),
    ("nvidia_ml_py", "nvidia-ml-py"),
    ("pyserial", "pyserial"),
)


def software_versions() -> dict[str, Any]:
    """Versions of Python and of the packages a measurement depends on (None: absent)."""
    out: dict[str, Any] = {"python": platform.python_version()}
    for key, dist in _PACKAGES:
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = None
    return out


def gpu_provenance(meter_set: MeterSet) -> list[dict[str, Any]]:
    """Each metered GPU: identity, and its latest context (power limit, clocks, temperature)."""
    nvml = meter_set.nvml()
    if nvml is None:
        return []
    out = []
    versions = nvml.versions() or {}
    for source, ident in nvml.gpus.items():
        entry: dict[str, Any] = {"source": source, **asdict(ident)}
        ctx = nvml.context(source)
        entry["context"] = None if ctx is None else asdict(ctx)
        entry["driver_version"] = versions.get("driver")
        entry["cuda_driver_version"] = versions.get("cuda_driver")
        out.append(entry)
    return out
