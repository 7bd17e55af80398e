"""The retained ``status`` of a node: what a fleet view needs, built from the service's parts.

``infergy serve`` publishes :meth:`NodeStatus.body` on ``<topic_root>/<node>/status`` (retained,
QoS 1) when it connects, on every job change and every ``[mqtt] status_interval_s`` (a
heartbeat), and :meth:`NodeStatus.identity` as its last will with ``"state": "offline"``
(docs/fleet.md has the schema)::

    {"schema": "infergy-node-status/1", "state": "online", "node": "edge-01",
     "version": "0.1.0", "config_digest": "sha256:d91f0c9c8c66c790", "t_unix_s": ...,
     "gpus": [{"index": 0, "source": "gpu0", "name": "NVIDIA H200", "uuid": "GPU-...",
               "power_limit_w": 700.0, "simulated": false}],
     "idle_power_w": {"gpu0": 74.8, "ac": 181.2}, "analyzers": [...],
     "current_job": {"run_id": "...", "kind": "run", "state": "running", ...},
     "jobs": [...], "last_result": {"run_id": "...", "status": "ok", ...}, ...}

Idle power is the live power of each source's primary signal, taken while no job runs (kept,
not replaced, while one does; ``null`` until the service has been idle once). Everything is
read from in-memory state: building the body does no I/O, so it runs on the event loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from infergy import __version__
from infergy.config.settings import Settings
from infergy.daemon.jobs import JobSpec
from infergy.daemon.meters import MeterSet
from infergy.daemon.scheduler import Job, JobScheduler, JobState
from infergy.exporters.telemetry import Telemetry

STATUS_SCHEMA = "infergy-node-status/1"
RECENT_JOBS = 8
"""Jobs listed in ``jobs``, newest first (a campaign finds its run id there)."""
_PRIMARY = ("counter", "mean", "instant")


class NodeStatus:
    """This node's status body, for :class:`~infergy.exporters.mqtt.MqttPublisher`.

    Args:
        settings: the configuration (node name, the config digest, the heartbeat interval).
        meter_set: the service's meters (GPU identities, analyzers).
        telemetry: the live snapshot (power, GPU power limits, meters up).
        scheduler: the job queue (current and recent jobs).
        clock: Unix time in seconds (tests pass their own).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        meter_set: MeterSet,
        telemetry: Callable[[], Telemetry],
        scheduler: JobScheduler,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._meters = meter_set
        self._telemetry = telemetry
        self._scheduler = scheduler
        self._clock = clock
        self._started_unix_s = round(clock(), 3)
        self._digest = settings.config_digest()
        self._idle_power_w: dict[str, float] | None = None
        self._idle_t_unix_s: float | None = None
        self._last_result: dict[str, Any] | None = None

    def identity(self) -> dict[str, Any]:
        """What does not change while the service runs (also the last will's body)."""
        nvml = self._meters.nvml()
        gpus = [] if nvml is None else [
            {"index": g.index, "source": source, "name": g.name, "uuid": g.uuid,
             "simulated": g.simulated}
            for source, g in nvml.gpus.items()
        ]  # fmt: skip
        return {
            "schema": STATUS_SCHEMA,
            "node": self._settings.node_name,
            "version": __version__,
            "config_digest": self._digest,
            "started_unix_s": self._started_unix_s,
            "status_interval_s": self._settings.mqtt.status_interval_s,
            "gpus": gpus,
        }

    def body(self) -> dict[str, Any]:
        """The whole status now (the publisher adds ``state`` and ``t_unix_s``)."""
        snapshot = self._telemetry()
        jobs = self._scheduler.list_jobs()
        running = [j for j in jobs if j.state is JobState.RUNNING]
        if not running:
            self._note_idle(snapshot)
        limits = {g.gpu: g.power_limit_w for g in snapshot.gpus}
        body = self.identity()
        for gpu in body["gpus"]:
            gpu["power_limit_w"] = _finite(limits.get(gpu["source"]))
        body |= {
            "simulated": any(s.simulated for s in snapshot.sources),
            "meters_up": bool(snapshot.sources) and all(s.up for s in snapshot.sources),
            "idle_power_w": self._idle_power_w,
            "idle_power_t_unix_s": self._idle_t_unix_s,
            "analyzers": self._analyzers(snapshot),
            "current_job": _job(running[0]) if running else None,
            "queued_jobs": sum(j.state is JobState.QUEUED for j in jobs),
            "jobs": [_job(j) for j in jobs[:RECENT_JOBS]],  # newest first
            "last_result": self._last_result,
        }
        return body

    def result_published(self, result: dict[str, Any]) -> None:
        """Remember the headline of the newest finished result (``last_result``)."""
        performance = result.get("performance") or {}
        self._last_result = {
            "run_id": result.get("run_id", result.get("sweep_id")),
            "kind": "maxq" if result.get("kind") == "infergy-maxq-sweep" else "run",
            "status": result.get("status"),
            "scenario": result.get("scenario"),
            "samples_per_second": _finite(performance.get("samples_per_second")),
            "t_unix_s": round(self._clock(), 3),
        }

    def _note_idle(self, snapshot: Telemetry) -> None:
        watts = {
            s.source: round(s.power_w, 2)
            for s in snapshot.sources
            if s.device in _PRIMARY and s.power_w is not None and math.isfinite(s.power_w)
        }
        if watts:
            self._idle_power_w, self._idle_t_unix_s = watts, round(self._clock(), 3)

    def _analyzers(self, snapshot: Telemetry) -> list[dict[str, Any]]:
        up = {s.source: s.up for s in snapshot.sources if s.kind == "analyzer"}
        out = []
        for meter in self._meters.ptd_meters():
            health = meter.health().get(meter.source)
            out.append({
                "source": meter.source,
                "address": f"{meter.host}:{meter.port}",
                "up": up.get(meter.source, False),
                "simulated": meter.simulated,
                "error": None if health is None or up.get(meter.source) else health.last_error,
            })  # fmt: skip
        return out


def _job(job: Job) -> dict[str, Any]:
    spec = job.spec
    return {
        "run_id": job.run_id,
        "kind": "run" if isinstance(spec, JobSpec) else "maxq",
        "state": job.state.value,
        "label": spec.label,
        "error": job.error,
        "submitted_unix_s": _unix_s(job.submitted_unix_ns),
        "started_unix_s": _unix_s(job.started_unix_ns),
        "finished_unix_s": _unix_s(job.finished_unix_ns),
    }


def _unix_s(t_ns: int | None) -> float | None:
    return None if t_ns is None else round(t_ns / 1e9, 3)


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
