"""The backend Protocol: one model on one device, ready to run batches.

Contract (what the SUT and the benchmarks rely on):

- :meth:`Backend.load` does everything slow (read/build/compile the model, make the inputs,
  capture CUDA graphs); it raises infergy errors (:class:`~infergy.errors.ModelError`,
  :class:`~infergy.errors.PrecisionError`, :class:`~infergy.errors.DeviceOutOfMemoryError`
  with the largest batch that fits...), never a vendor exception.
- :meth:`Backend.infer` runs a batch of ``n`` samples (``1 <= n <= max_batch``) on inputs
  made at load time (resident where the backend keeps them: host memory for onnxruntime,
  device memory for torch/TensorRT, as MLPerf's QSL does) on executor ``worker`` and returns
  **only when the outputs are complete**: the executor's CUDA stream is synchronised, so a
  completion timestamp taken after it is true. Different ``worker`` indices may call it
  concurrently from different threads; one worker index is used by one thread at a time.
- Outputs stay where the backend produced them (no accuracy checks: performance mode only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Limits:
    """What a loaded backend can take.

    Attributes:
        max_batch: the largest batch ``infer`` accepts (the configured batch size).
        sample_shape: one sample's input shape (without the batch axis).
        fixed_batches: batch sizes with a fast path (CUDA graphs, TensorRT profiles); a
            smaller batch is padded up to the next one. Empty: any size runs as is.
        memory_bytes: device memory the backend holds after load, when known.
    """

    max_batch: int
    sample_shape: tuple[int, ...]
    fixed_batches: tuple[int, ...] = ()
    memory_bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """One model on one device (``cpu`` or ``gpu<i>``); see the module docstring."""

    device: str

    def load(self) -> None:
        """Prepare everything (model, engine, inputs, graphs); raises infergy errors."""
        ...

    def infer(self, n: int, worker: int = 0) -> None:
        """Run ``n`` samples on executor ``worker``; returns when the outputs are complete."""
        ...

    def limits(self) -> Limits:
        """Batch and shape limits of the loaded model."""
        ...

    def describe(self) -> dict[str, Any]:
        """Provenance: library versions, model name and hash, precision, device name."""
        ...

    def close(self) -> None:
        """Release the model and device memory (idempotent)."""
        ...


def batch_sizes_for(max_batch: int) -> tuple[int, ...]:
    """Fixed batch shapes for graph capture: powers of two below ``max_batch``, and it."""
    sizes = {max_batch}
    b = 1
    while b < max_batch:
        sizes.add(b)
        b *= 2
    return tuple(sorted(sizes))


def padded_batch(n: int, fixed: tuple[int, ...]) -> int:
    """The smallest fixed batch >= ``n`` (``n`` itself when ``fixed`` is empty)."""
    for b in fixed:
        if b >= n:
            return b
    if fixed:
        msg = f"batch {n} is larger than the largest prepared batch {fixed[-1]}"
        raise ValueError(msg)
    return n
