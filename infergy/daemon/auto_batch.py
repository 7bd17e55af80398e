"""``--batch-size auto``: the knee of a batch sweep, measured once and cached.

The knee is the smallest batch whose samples/s per watt is within ``[maxq] knee_within``
(3 %) of the best batch's (:func:`infergy.maxq.recommend.knee_batch_size`): beyond it a larger
batch buys latency and memory, not efficiency. It is measured by a read-only MaxQ sweep over
``[maxq] auto_batch_sizes`` in the Offline scenario at the GPU's current settings (no setter is
called), and cached per (backend, model, precision, GPU) in ``<state dir>/batch-knee.json``;
the sweep that measured it stays in the store (``infergy maxq show``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infergy.config.settings import Settings
from infergy.daemon.jobs import JobSpec
from infergy.daemon.maxq_points import usable
from infergy.daemon.maxq_spec import MaxqSpec
from infergy.errors import GpuError
from infergy.maxq.errors import NoFeasiblePointError
from infergy.maxq.recommend import knee_batch_size
from infergy.meters.nvml_device import NvmlLibrary

CACHE_FILE = "batch-knee.json"
_SCHEMA = 1


@dataclass(frozen=True)
class AutoBatch:
    """What ``auto`` resolved to.

    Attributes:
        batch_size: the knee.
        key: the cache key (backend, model, precision, GPU).
        cached: True when read from the cache (nothing measured now).
        sweep_id: the sweep that measured it.
        efficiency: samples/J by batch size, as measured.
        simulated: measured on simulated hardware.
    """

    batch_size: int
    key: str
    cached: bool
    sweep_id: str | None
    efficiency: dict[int, float]
    simulated: bool

    def describe(self) -> str:
        """One line for people."""
        how = "cached" if self.cached else "measured now"
        sim = " (SIMULATED)" if self.simulated else ""
        return f"batch size auto = {self.batch_size}: the knee for {self.key}, {how}{sim}"


def gpu_key(job: JobSpec, settings: Settings, env: Mapping[str, str]) -> str:
    """What the knee depends on besides the workload: the GPU model (or ``cpu``)."""
    if job.backend in (None, "onnxruntime") and not job.gpus:
        return "cpu"
    m = settings.meters
    if m.simulated_gpus:
        return f"simulated-{m.simulated_part}"
    with contextlib.suppress(GpuError), NvmlLibrary() as nvml:
        gpus, _ = nvml.visible_gpus(env)
        if gpus:
            return "+".join(sorted({g.identity.name for g in gpus}))
    return "unknown-gpu"


def cache_key(job: JobSpec, gpu: str) -> str:
    """``torch|resnet50|fp16|NVIDIA H200``."""
    return f"{job.backend or 'onnxruntime'}|{job.model}|{job.precision}|{gpu}"


def read_cache(state_dir: Path) -> dict[str, Any]:
    """The cached knees by key (empty when there is no readable cache)."""
    try:
        body = json.loads((state_dir / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(body, dict) or body.get("schema_version") != _SCHEMA:
        return {}
    entries = body.get("entries")
    return dict(entries) if isinstance(entries, dict) else {}


def write_cache(state_dir: Path, key: str, entry: Mapping[str, Any]) -> None:
    """Add or replace one knee (temporary file, fsync, rename)."""
    entries = {**read_cache(state_dir), key: dict(entry)}
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / CACHE_FILE
    tmp = path.with_name(f".{CACHE_FILE}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump({"schema_version": _SCHEMA, "entries": entries}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def knee_spec(job: JobSpec, settings: Settings) -> MaxqSpec:
    """The read-only batch sweep that finds the knee (Offline, current settings)."""
    mq = settings.maxq
    return MaxqSpec(
        backend=job.backend, model=job.model, scenario="offline", precision=job.precision,
        batch_size=max(mq.auto_batch_sizes), gpus=job.gpus, meter=job.meter,
        workers=job.workers, cuda_graphs=job.cuda_graphs, channels_last=job.channels_last,
        compile=job.compile, seed=job.seed, label="batch size auto",
        batch_sizes=",".join(str(b) for b in mq.auto_batch_sizes),
        point_duration=mq.auto_point_duration_s, search="grid",
    )  # fmt: skip


def knee_of(record: Any, within: float) -> tuple[int, dict[int, float]]:
    """The knee from a finished batch sweep's record (usable points only).

    Raises:
        NoFeasiblePointError: no batch gave a usable measurement.
    """
    efficiency: dict[int, float] = {}
    for entry in usable(record.entries):
        assert entry.measured is not None
        batch = entry.measured.point.batch_size
        if isinstance(batch, int):
            value = entry.measured.samples_per_joule[0]
            efficiency[batch] = max(value, efficiency.get(batch, 0.0))
    if not efficiency:
        msg = "batch size auto: no batch size gave a usable measurement"
        raise NoFeasiblePointError(msg, hint="see `infergy maxq show` for the batch sweep")
    return knee_batch_size(efficiency, within=within), efficiency


def cached_auto_batch(job: JobSpec, settings: Settings, env: Mapping[str, str]) -> AutoBatch | None:
    """The cached knee for this job, or None (nothing is measured)."""
    key = cache_key(job, gpu_key(job, settings, env))
    cached = read_cache(settings.maxq_state_dir(env)).get(key)
    if not (isinstance(cached, dict) and isinstance(cached.get("batch_size"), int)):
        return None
    eff = {int(k): float(v) for k, v in (cached.get("efficiency") or {}).items()}
    return AutoBatch(
        cached["batch_size"], key, True, cached.get("sweep_id"), eff, bool(cached.get("simulated"))
    )


async def resolve_auto_batch(
    job: JobSpec,
    settings: Settings,
    *,
    env: Mapping[str, str],
    sweep_id: str,
    run_sweep: Callable[[str, MaxqSpec], Awaitable[Any]],
) -> AutoBatch:
    """The knee for this job: from the cache, else measured by a batch sweep (then cached).

    Args:
        job: the run (its batch size is ignored).
        settings: the configuration.
        env: the environment.
        sweep_id: the id of the batch sweep, if one runs.
        run_sweep: runs a sweep (``MaxqSweep(...).run()``) and returns its record.
    """
    found = cached_auto_batch(job, settings, env)
    if found is not None:
        return found
    state_dir = settings.maxq_state_dir(env)
    key = cache_key(job, gpu_key(job, settings, env))
    record = await run_sweep(sweep_id, knee_spec(job, settings))
    batch, efficiency = knee_of(record, settings.maxq.knee_within)
    write_cache(
        state_dir, key,
        {"batch_size": batch, "efficiency": {str(b): e for b, e in efficiency.items()},
         "sweep_id": sweep_id, "measured_unix_ns": time.time_ns(),
         "simulated": record.simulated, "within": settings.maxq.knee_within},
    )  # fmt: skip
    return AutoBatch(batch, key, False, sweep_id, efficiency, record.simulated)
