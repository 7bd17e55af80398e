"""The descriptive and figure-less parts of a session's result (identity, provenance).

Split from :mod:`infergy.daemon.session`; the figures themselves come from
:func:`infergy.core.analyze`.
"""

from __future__ import annotations

import contextlib
import platform
import socket
from typing import TYPE_CHECKING, Any

from infergy import __version__
from infergy.config.settings import Settings
from infergy.core.trace import NS_PER_S, QueryLog
from infergy.daemon.jobs import JobSpec
from infergy.daemon.provenance import gpu_provenance, software_versions
from infergy.daemon.session_types import _State
from infergy.errors import InfergyError
from infergy.runners.types import WorkloadConfig

if TYPE_CHECKING:
    from infergy.daemon.meters import MeterSet


def result_identity(
    run_id: str,
    *,
    spec: JobSpec,
    settings: Settings,
    runner: Any,
    st: _State,
    cfg: WorkloadConfig,
    meter_set: MeterSet,
) -> dict[str, Any]:
    """The descriptive part of a result: what ran, where, with which software and GPUs."""
    software = software_versions()
    described: dict[str, Any] = {}
    if runner is not None:
        with contextlib.suppress(InfergyError):
            described = software["workload"] = runner.describe()
    devices = cfg.device_names  # gpu<i> per GPU, "cpu", or "server" for a network backend
    return {
        "run_id": run_id,
        "backend": cfg.backend,
        # what ran, not what was asked: "auto" is resolved by the backend (tiny, resnet50...)
        "model": str(described.get("model") or cfg.model),
        "precision": described.get("precision") or cfg.precision,
        "batch_size": described.get("batch_size") or cfg.batch_size,
        "devices": devices,
        "host": socket.gethostname(),
        "provenance": {
            "infergy_version": __version__,
            "command": "run",
            "job": spec.model_dump(mode="json"),
            "config": settings.dump_masked(),
            "software": software,
            "platform": platform.platform(),
            "gpus": st.gpus_start,
            "gpus_at_end": gpu_provenance(meter_set),
            "meters": meter_set.describe(),
            "session_clock": {"wall0_ns": st.clock.wall0_ns, "mono0_ns": st.clock.mono0_ns},
            "idle_window": None
            if st.idle is None
            else {"start_unix_ns": st.idle.start_ns, "end_unix_ns": st.idle.end_ns},
        },
    }


def bare_result(
    identity: dict[str, Any],
    st: _State,
    cfg: WorkloadConfig,
    partial: QueryLog | None,
    *,
    status: str,
    problems: list[str],
) -> dict[str, Any]:
    """A schema-1 result without figures (a checkpoint, or an abort with nothing to analyse)."""
    now = st.clock.now_ns()
    return {
        "schema_version": 1,
        "run_id": identity["run_id"],
        "status": status,
        "problems": problems,
        "scenario": cfg.scenario.value,
        **{k: identity[k] for k in ("backend", "model", "precision", "batch_size")},
        "devices": identity["devices"],
        "host": identity["host"],
        "window": {
            "start_unix_ns": st.started_ns,
            "end_unix_ns": now,
            "duration_s": (now - st.started_ns) / NS_PER_S,
        },
        "performance": {
            "queries": 0 if partial is None else len(partial),
            "samples": None,
            "samples_per_second": None,
            "latency_ms": None,
        },
        "power": {},
        "efficiency": {},
        "provenance": identity["provenance"],
    }
