"""The generative backend Protocol: a decoder with a KV cache of ``max_batch`` slots per executor.

Contract (what the generative SUT, :mod:`infergy.runners.gen_sut`, relies on):

- :meth:`GenerativeBackend.load` does everything slow (weights, KV cache, CUDA graphs); a batch
  whose KV cache and workspace do not fit is a :class:`~infergy.errors.DeviceOutOfMemoryError`
  naming the largest batch that does; never a vendor exception.
- :meth:`GenerativeBackend.prefill` runs the prompts of new sequences (their lengths) into the
  given cache slots of executor ``worker`` and returns when their first tokens are out;
  :meth:`GenerativeBackend.decode` produces one more token for each sequence in ``slots``
  (whose caches hold ``context_tokens`` tokens) and returns when they are out. Both synchronise
  the executor's stream: a timestamp taken after the call is true.
- ``infer(n)`` (the plain :class:`~infergy.runners.backends.base.Backend` call) generates one
  static batch of ``n`` sequences of the run's mean lengths, for a tight loop.
- One worker index is used by one thread at a time; different workers may run concurrently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from infergy.core.lengths import MIN_OUTPUT_TOKENS, LengthDist
from infergy.core.llm import LlmShape, cache_tokens
from infergy.runners.backends.base import Limits
from infergy.runners.gen_config import shape_of
from infergy.runners.types import WorkloadConfig

ActivitySink = Callable[[int, float], None]
"""``sink(worker, fraction)``: a simulated step's activity, reported as it starts."""


@dataclass(frozen=True)
class GenerationSpec:
    """What a generative backend is built for.

    Attributes:
        shape: the model's dimensions.
        precision: ``fp32``, ``fp16`` or ``bf16``.
        max_batch: KV cache slots per executor (the largest decode batch).
        workers: executors per device.
        inputs: the prompt length distribution.
        outputs: the output length distribution.
        seed: weights, prompt tokens.
        cuda_graphs: capture the decode step's graphs (GPU).
    """

    shape: LlmShape
    precision: str
    max_batch: int
    workers: int
    inputs: LengthDist
    outputs: LengthDist
    seed: int = 0
    cuda_graphs: bool = True

    @property
    def longest_tokens(self) -> int:
        """The longest sequence: the longest prompt plus the longest output."""
        return self.inputs.high + self.outputs.high

    @property
    def cache_tokens(self) -> int:
        """Each slot's KV cache length."""
        return cache_tokens(self.longest_tokens)

    @property
    def mean_lengths(self) -> tuple[int, int]:
        """(prompt, output) tokens of a typical sequence (``infer``'s static batches)."""
        return max(1, round(self.inputs.mean)), max(2, round(self.outputs.mean))


@runtime_checkable
class GenerativeBackend(Protocol):
    """A decoder on one device; see the module docstring."""

    device: str

    def load(self) -> None:
        """Weights, cache, graphs; raises infergy errors."""
        ...

    def prefill(self, slots: Sequence[int], prompt_tokens: Sequence[int], worker: int = 0) -> None:
        """Prompts into ``slots``; returns when their first tokens are out."""
        ...

    def decode(self, slots: Sequence[int], context_tokens: Sequence[int], worker: int = 0) -> None:
        """One token for each sequence in ``slots``; returns when they are out."""
        ...

    def infer(self, n: int, worker: int = 0) -> None:
        """One static batch of ``n`` typical sequences, prefill to the last token."""
        ...

    def limits(self) -> Limits:
        """Slots per executor, cache length (``details``)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Provenance: the model's dimensions, precision, device, versions."""
        ...

    def close(self) -> None:
        """Release everything (idempotent)."""
        ...


def generation_spec(cfg: WorkloadConfig) -> GenerationSpec:
    """The generative spec of a validated generative workload config."""
    return GenerationSpec(
        shape=shape_of(cfg.backend, cfg.model), precision=cfg.precision,
        max_batch=cfg.batch_size, workers=cfg.workers_per_device,
        inputs=LengthDist.parse(cfg.input_tokens, name="input tokens"),
        outputs=LengthDist.parse(cfg.output_tokens, name="output tokens",
                                 minimum=MIN_OUTPUT_TOKENS),
        seed=cfg.seed, cuda_graphs=cfg.cuda_graphs,
    )  # fmt: skip


def static_generation(
    backend: GenerativeBackend, spec: GenerationSpec, n: int, worker: int
) -> None:
    """``infer(n)`` for any generative backend: prefill ``n`` typical prompts, decode to the end."""
    prompt, output = spec.mean_lengths
    slots = list(range(min(n, spec.max_batch)))
    backend.prefill(slots, [prompt] * len(slots), worker)
    for k in range(1, output):
        backend.decode(slots, [prompt + k] * len(slots), worker)
