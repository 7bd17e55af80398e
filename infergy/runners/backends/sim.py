"""The simulated backend (``--backend sim``): a GPU's batch latency from the model, slept.

It computes nothing: ``infer(n)`` sleeps what :func:`infergy.core.gpu_model.steady_state`
says a batch of ``n`` takes on the simulated part (the model name: ``h200``, ``t4``, ``l4``,
``a2``) at the board's current settings, so a LoadGen run over it has the throughput the
simulated NVML device's power belongs to. The session tells it the settings
(:meth:`SimulatedBackend.simulate`, through the LoadGen process's ``simulate`` command) after
every change. Everything it reports is SIMULATED.

Sleeps overshoot by tens of microseconds, which at batch 1 (a fraction of a millisecond per
batch) would bias the throughput by several percent; each worker keeps the overshoot it owes
and takes it off its next sleep, so the mean batch time is the model's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from infergy.core.gpu_model import PARTS, PRECISIONS, ModelSettings, steady_state
from infergy.errors import PrecisionError, WorkloadError
from infergy.runners.backends.base import Limits
from infergy.runners.models import ModelSpec
from infergy.runners.types import WorkloadConfig

SAMPLE_SHAPE = (3, 224, 224)
"""What the simulated work stands for: an image classifier's input (ResNet-50)."""
MAX_DEBT_S = 0.01
"""Overshoot owed beyond this (a stalled host) is forgiven, not paid back in a burst."""


class SimulatedBackend:
    """One simulated GPU's batches as sleeps (implements ``Backend``; SIMULATED).

    Args:
        cfg: the workload (precision, batch size, workers).
        spec: the model: a simulated part's key.
        gpu: the simulated board's index (None: index 0, on the "cpu" device name).
    """

    def __init__(self, cfg: WorkloadConfig, spec: ModelSpec, gpu: int | None) -> None:
        if spec.name not in PARTS:
            msg = f"the sim backend simulates a GPU part, not {spec.name!r}"
            raise WorkloadError(msg, hint=f"use --model {' or '.join(PARTS)}")
        self.part = PARTS[spec.name]
        self.cfg = cfg
        self.device = "cpu" if gpu is None else f"gpu{gpu}"
        self._lock = threading.Lock()
        self._settings = ModelSettings(self.part.default_power_limit_w)
        self._latency_s: dict[int, float] = {}
        self._debt_s = [0.0] * max(1, cfg.workers_per_device)

    def load(self) -> None:
        """Check the precision (nothing to load)."""
        if self.cfg.precision not in PRECISIONS:
            msg = f"the sim backend has no model of {self.cfg.precision}"
            raise PrecisionError(msg, hint=f"use one of {', '.join(PRECISIONS)}")

    def simulate(self, settings: Mapping[str, Any]) -> None:
        """The board's settings from now on (``ModelSettings.to_json`` form)."""
        new = ModelSettings.from_json(settings)
        with self._lock:
            if new != self._settings:
                self._settings, self._latency_s = new, {}

    def batch_latency_s(self, n: int) -> float:
        """What a batch of ``n`` takes at the current settings (cached per batch size)."""
        with self._lock:
            latency = self._latency_s.get(n)
            settings = self._settings
        if latency is None:
            point = steady_state(self.part, settings, batch_size=n, precision=self.cfg.precision)
            latency = point.batch_latency_s
            with self._lock:
                if settings == self._settings:
                    self._latency_s[n] = latency
        return latency

    def infer(self, n: int, worker: int = 0) -> None:
        """Sleep a batch of ``n`` (less the overshoot this worker owes)."""
        target = self.batch_latency_s(n)
        debt = self._debt_s[worker]
        wait = max(0.0, target - debt)
        t0 = time.perf_counter()
        time.sleep(wait)
        took = time.perf_counter() - t0
        self._debt_s[worker] = min(MAX_DEBT_S, max(0.0, debt + took - target))

    def limits(self) -> Limits:
        """Any batch up to the configured one."""
        return Limits(max_batch=self.cfg.batch_size, sample_shape=SAMPLE_SHAPE)

    def describe(self) -> dict[str, Any]:
        """The part, the settings, SIMULATED."""
        with self._lock:
            settings = self._settings
        return {
            "backend": "sim",
            "model": self.part.key,
            "model_sha256": None,
            "simulated": True,
            "part": self.part.name,
            "precision": self.cfg.precision,
            "device": self.device,
            "settings": settings.to_json(),
            "problems": [
                f"{self.device}: SIMULATED workload ({self.part.name}), not a measurement"
            ],
        }

    def close(self) -> None:
        """Nothing to release."""
