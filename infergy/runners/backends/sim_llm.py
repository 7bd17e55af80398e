"""The simulated generative backend (``--backend sim --workload llm``): steps as sleeps.

It computes nothing: a prefill or decode step sleeps what :mod:`infergy.core.gpu_llm` says
it takes on the simulated part (the model name: ``h200``...) for the ``llama-8b-shape``
decoder at the board's current settings, and reports the step's activity as it starts, so the
simulated NVML device draws the step's power (the session's simulated board uses the same
model). Its memory plan is checked against the part's memory: a batch that does not fit is a
:class:`~infergy.errors.DeviceOutOfMemoryError` naming the largest that does. Everything it
reports is SIMULATED.

As in :mod:`.sim`, each worker keeps the sleep overshoot it owes and takes it off its next
step, so the mean step time is the model's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from infergy.core.gpu_llm import StepPoint, activity, decode_point, prefill_point
from infergy.core.gpu_model import PARTS, ModelSettings
from infergy.core.llm import largest_batch, memory_plan
from infergy.errors import DeviceOutOfMemoryError, WorkloadError
from infergy.runners.backends.base import Limits
from infergy.runners.backends.gen_base import ActivitySink, GenerationSpec, static_generation

MAX_DEBT_S = 0.01


class SimulatedGenerator:
    """One simulated GPU's prefill and decode steps as sleeps (SIMULATED).

    Args:
        spec: the generative workload.
        part_key: the simulated part (``h200``, ``l4``, ``t4``, ``a2``).
        gpu: the board's index (None: the "cpu" device name).
    """

    def __init__(self, spec: GenerationSpec, part_key: str, gpu: int | None) -> None:
        if part_key not in PARTS:
            msg = f"the sim backend simulates a GPU part, not {part_key!r}"
            raise WorkloadError(msg, hint=f"use --model {' or '.join(PARTS)}")
        self.spec = spec
        self.part = PARTS[part_key]
        self.device = "cpu" if gpu is None else f"gpu{gpu}"
        self._lock = threading.Lock()
        self._settings = ModelSettings(self.part.default_power_limit_w)
        self._debt_s = [0.0] * max(1, spec.workers)
        self._sink: ActivitySink | None = None

    def load(self) -> None:
        """Check that the weights and every worker's KV cache fit the part's memory."""
        spec, part = self.spec, self.part
        plan = memory_plan(spec.shape, spec.precision, batch=spec.max_batch,
                           longest_tokens=spec.longest_tokens, workers=spec.workers)  # fmt: skip
        if plan.total_bytes > 0.92 * part.memory_bytes:
            largest = largest_batch(spec.shape, spec.precision, longest_tokens=spec.longest_tokens,
                                    free_bytes=part.memory_bytes, workers=spec.workers)  # fmt: skip
            gib = plan.total_bytes / 2**30
            msg = (f"{spec.shape.name} at batch {spec.max_batch} needs {gib:.1f} GiB; the "
                   f"simulated {part.name} has {part.memory_bytes / 2**30:.0f} GiB")  # fmt: skip
            hint = (f"use --batch-size {largest} (the largest that fits)" if largest
                    else "no batch fits: use a larger part or shorter sequences")  # fmt: skip
            raise DeviceOutOfMemoryError(msg, hint=hint, largest_batch=largest)

    def set_activity_sink(self, sink: ActivitySink | None) -> None:
        """Where each step's activity goes as it starts (the SUT's status board)."""
        self._sink = sink

    def simulate(self, settings: Mapping[str, Any]) -> None:
        """The board's settings from now on (``ModelSettings.to_json`` form)."""
        new = ModelSettings.from_json(settings)
        with self._lock:
            self._settings = new

    def _run(self, point_of: Any, worker: int) -> None:
        t0 = time.perf_counter()
        with self._lock:
            settings = self._settings
        point: StepPoint = point_of(settings)
        if self._sink is not None:
            self._sink(worker, activity(self.part, settings, point, self.spec.precision))
        debt = self._debt_s[worker]
        target = point.seconds - (time.perf_counter() - t0)  # the model's time, less ours
        t1 = time.perf_counter()
        time.sleep(max(0.0, target - debt))
        took = time.perf_counter() - t1
        self._debt_s[worker] = min(MAX_DEBT_S, max(0.0, debt + took - target))

    def prefill(self, slots: Sequence[int], prompt_tokens: Sequence[int], worker: int = 0) -> None:
        """Sleep one prefill of these prompts."""
        del slots
        spec, part = self.spec, self.part
        prompts = list(prompt_tokens)
        self._run(lambda s: prefill_point(part, s, spec.shape, prompts, spec.precision), worker)

    def decode(self, slots: Sequence[int], context_tokens: Sequence[int], worker: int = 0) -> None:
        """Sleep one decode step of these sequences."""
        del slots
        spec, part = self.spec, self.part
        ctx = list(context_tokens)
        self._run(lambda s: decode_point(part, s, spec.shape, ctx, spec.precision), worker)

    def infer(self, n: int, worker: int = 0) -> None:
        """One static batch of typical sequences."""
        static_generation(self, self.spec, n, worker)

    def limits(self) -> Limits:
        """Slots per worker and the cache length."""
        return Limits(max_batch=self.spec.max_batch, sample_shape=(),
                      details={"cache_tokens": self.spec.cache_tokens})  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """The part, the decoder's dimensions, the settings, SIMULATED."""
        with self._lock:
            settings = self._settings
        return {
            "backend": "sim", "model": self.spec.shape.name, "model_sha256": None,
            "simulated": True, "part": self.part.name, "precision": self.spec.precision,
            "device": self.device, "settings": settings.to_json(),
            "llm": self.spec.shape.describe(), "cache_tokens": self.spec.cache_tokens,
            "problems": [
                f"{self.device}: SIMULATED workload ({self.spec.shape.name} on "
                f"{self.part.name}), not a measurement"
            ],
        }  # fmt: skip

    def close(self) -> None:
        """Nothing to release."""
