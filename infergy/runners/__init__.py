"""Inference workloads under the real MLPerf LoadGen, on the CPU or one or many GPUs.

The session orchestrator uses :class:`Workload` (async; LoadGen runs in a child process) with
a :class:`WorkloadConfig`; a run gives a :class:`RunOutcome` (the query log on the session
clock, per device, LoadGen's window and verdict). Backends (onnxruntime, torch, TensorRT)
implement :class:`~infergy.runners.backends.base.Backend`; :class:`~infergy.runners.engine.Engine`
is the synchronous core, also usable in-process (benchmarks).
"""

from infergy.runners.backends.base import Backend, Limits
from infergy.runners.types import Progress, RunOutcome, WorkloadConfig, default_cache_dir
from infergy.runners.workload import Workload

__all__ = [
    "Backend",
    "Limits",
    "Progress",
    "RunOutcome",
    "Workload",
    "WorkloadConfig",
    "default_cache_dir",
]
