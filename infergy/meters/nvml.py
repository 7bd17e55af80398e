"""The NVML meter: every visible NVIDIA GPU as power sources, sampled the way the hardware works.

Per GPU it provides (naming contract, details in :mod:`infergy.meters.nvml_probe`):

- ``gpu<i>``: the energy counter as a ``counter`` trace in joules, read at the counter's own
  update period (measured per GPU at open, ~100 ms on Hopper), or, with
  ``counter_sparse_interval_s``, every ~1 s and densely only where :meth:`NvmlMeter.dense_counter`
  asks (a window's edges): each read costs 2.7-12 ms of CPU. The in-band reference.
- ``gpu<i>.samples``: the driver's 20-ms power samples (``instant``), read in batches.
- ``gpu<i>.avg``: NVML's 1-s average power (``interval_mean``, polled at 1 Hz), the figure
  naive tools integrate; kept for comparison.

``<i>`` numbers the GPUs visible through ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs) in NVML
index order. A MIG-enabled GPU is one board: its power is not split per MIG instance, so it is
one source however many instances are visible (``SourceInfo.details["mig"]`` says so).
Context (power limit, clocks, temperature, clock-event reasons, utilization, memory power) is
read at ~1 Hz: :meth:`NvmlMeter.context`, :meth:`NvmlMeter.context_arrays`.

Read-only: the meter never calls an NVML setter. Example::

    clock = SessionClock()
    with NvmlMeter.open(clock=clock) as meter:      # blocking: ~0.5 s per GPU to calibrate
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(meter.run(), name="meter[nvml]")
            ...                                      # the workload
            task.cancel()
        energy = window_energy(meter.snapshot("gpu0"), window)
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from types import TracebackType

import numpy as np
import numpy.typing as npt

from infergy.core.clock import SessionClock
from infergy.core.trace import Trace
from infergy.errors import GpuError, MeterError
from infergy.meters.base import DEFAULT_CAPACITY, MeterHealth, SourceInfo
from infergy.meters.gpu import GpuContext, GpuDevice, GpuIdentity
from infergy.meters.nvml_device import NvmlLibrary
from infergy.meters.nvml_probe import CONTEXT_METRICS, NvmlMeterConfig
from infergy.meters.nvml_sampler import GpuSampler

__all__ = ["CONTEXT_METRICS", "NvmlMeter", "NvmlMeterConfig"]


class NvmlMeter:
    """Power sources from NVIDIA GPUs; implements :class:`~infergy.meters.base.Meter`.

    Construction probes every GPU (in parallel, blocking: each signal tried once, the energy
    counter's update period measured). Use :meth:`open` for the real GPUs; pass any
    :class:`~infergy.meters.gpu.GpuDevice` objects directly for tests and simulations.

    Args:
        gpus: the GPUs, in source order (``gpu0`` first).
        clock: the session clock.
        config: sampling rates and failure policy.
        capacity: samples kept per source (oldest dropped first).
        notes: facts about the selection to pass on (``CUDA_VISIBLE_DEVICES`` notes...).
    """

    name = "nvml"

    def __init__(
        self,
        gpus: Sequence[GpuDevice],
        *,
        clock: SessionClock,
        config: NvmlMeterConfig | None = None,
        capacity: int = DEFAULT_CAPACITY,
        notes: Sequence[str] = (),
    ) -> None:
        self.config = config or NvmlMeterConfig()
        self._clock = clock
        self._samplers = [
            GpuSampler(f"gpu{i}", gpu, clock, self.config, capacity) for i, gpu in enumerate(gpus)
        ]
        self._library: NvmlLibrary | None = None
        self.notes = list(notes)
        """Facts about the GPUs and signals, for people (unsupported signals, MIG, ...)."""
        try:
            for probe in [s.probe_in_worker() for s in self._samplers]:
                probe.result()
        except BaseException:
            self.close()
            raise
        self._by_source = {name: s for s in self._samplers for name in s.source_names}
        for s in self._samplers:
            if not s.source_names:
                self.notes.append(f"{s.source}: no power signal works on this GPU")
            self.notes += [
                f"{s.source}: {signal}: {status}"
                for signal, status in s.caps.status.items()
                if not status.startswith("ok")
            ]

    @classmethod
    def open(
        cls,
        *,
        clock: SessionClock,
        config: NvmlMeterConfig | None = None,
        capacity: int = DEFAULT_CAPACITY,
        env: Mapping[str, str] | None = None,
    ) -> NvmlMeter:
        """Initialise NVML and open every visible GPU (blocking; call it off the event loop).

        Args:
            clock: the session clock.
            config: sampling rates and failure policy.
            capacity: samples kept per source.
            env: where to read ``CUDA_VISIBLE_DEVICES`` (default: the process environment).

        Raises:
            GpuError: NVML is absent (no driver), or no GPU is visible (with a hint).
        """
        library = NvmlLibrary().open()
        try:
            gpus, notes = library.visible_gpus(env)
            if not gpus:
                detail = f" ({'; '.join(notes)})" if notes else ""
                msg = f"NVML sees no visible GPU{detail}"
                raise GpuError(msg, hint="check nvidia-smi and CUDA_VISIBLE_DEVICES")
            meter = cls(gpus, clock=clock, config=config, capacity=capacity, notes=notes)
        except BaseException:
            library.close()
            raise
        meter._library = library
        return meter

    def close(self) -> None:
        """Stop the worker threads and shut NVML down (if :meth:`open` initialised it)."""
        for s in self._samplers:
            s.close()
        library, self._library = self._library, None
        if library is not None:
            library.close()

    def __enter__(self) -> NvmlMeter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the Meter protocol -------------------------------------------------------------------

    def describe(self) -> list[SourceInfo]:
        """Every source of every GPU (``gpu0``, ``gpu0.samples``, ``gpu0.avg``, ``gpu1``...)."""
        return [info for s in self._samplers for info in s.infos()]

    async def run(self) -> None:
        """Sample every GPU until cancelled: one task per GPU, blocking calls in its worker."""
        async with asyncio.TaskGroup() as tg:
            for s in self._samplers:
                tg.create_task(s.run(), name=f"meter[nvml].{s.source}")

    def snapshot(
        self, source: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> Trace:
        """The samples of ``source`` so far (optionally within [start, end]) as a Trace."""
        return self._sampler(source).trace(source, start_ns, end_ns)

    def samples_after(
        self, source: str, after_ns: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """(t_ns, values) of ``source`` with ``t_ns > after_ns``: snapshot's samples, no full copy.

        Values are what :meth:`snapshot` holds (the counter in J, NaN marking a lost GPU).
        """
        sampler = self._sampler(source)
        try:
            return sampler.samples_after(source, after_ns)
        except KeyError:
            raise self._unknown(source) from None

    def health(self) -> dict[str, MeterHealth]:
        """Health per source."""
        return {name: h for s in self._samplers for name, h in s.health().items()}

    def set_counter_poll_factor(self, factor: float) -> None:
        """Change how often the energy counter is read densely (every ``factor`` updates).

        ``infergy serve`` reads it slowly between measurements (each read costs 2.7-12 ms of
        CPU) and at its own period during one, where window edges need it. Applies at once.
        """
        self.config = dataclasses.replace(self.config, counter_poll_factor=max(1.0, factor))
        for sampler in self._samplers:
            sampler.set_counter_poll_factor(factor)

    def dense_counter(self, for_s: float | None = None, gpus: Sequence[str] | None = None) -> None:
        """Read the energy counter densely for ``for_s`` from now (a window edge is near).

        Between dense spans the counter is read every ``counter_sparse_interval_s`` (when
        set and the GPU has a sample buffer). The span replaces any earlier one of those GPUs
        (``for_s = 0`` ends it) and applies at once. Safe to call from any thread.

        Args:
            for_s: the span; default ``config.counter_dense_span_s``.
            gpus: the GPUs (``gpu0``...); default every GPU of this meter.

        Raises:
            MeterError: a GPU this meter does not have.
        """
        span = self.config.counter_dense_span_s if for_s is None else for_s
        wanted = set(gpus) if gpus is not None else None
        if wanted is not None and wanted - {s.source for s in self._samplers}:
            raise self._unknown(", ".join(sorted(wanted - {s.source for s in self._samplers})))
        for sampler in self._samplers:
            if wanted is None or sampler.source in wanted:
                sampler.dense_counter(span)

    def counter_reads(self) -> dict[str, int]:
        """Energy-counter reads made so far, per GPU (each costs 2.7-12 ms of CPU)."""
        return {s.source: s.counter_reads for s in self._samplers}

    # -- GPU facts and context ----------------------------------------------------------------

    @property
    def gpus(self) -> dict[str, GpuIdentity]:
        """Each GPU's identity by its source name (``gpu0`` -> index, UUID, name...)."""
        return {s.source: s.gpu.identity for s in self._samplers}

    @property
    def devices(self) -> dict[str, GpuDevice]:
        """Each GPU device by its source name (MaxQ builds its controls from them)."""
        return {s.source: s.gpu for s in self._samplers}

    def versions(self) -> dict[str, str] | None:
        """Driver, NVML and CUDA driver versions (None for simulated or injected GPUs)."""
        if self._library is None:
            return None
        try:
            v = self._library.versions()
        except GpuError:
            return None
        return {"driver": v.driver, "nvml": v.nvml, "cuda_driver": v.cuda_driver}

    def context(self, gpu: str) -> GpuContext | None:
        """The latest context of one GPU (``gpu0``), or None before the first read."""
        return self._sampler(gpu).latest_context

    def context_arrays(self, gpu: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(t_ns, values) of one context series of one GPU (see :data:`CONTEXT_METRICS`)."""
        if metric not in CONTEXT_METRICS:
            msg = f"unknown context metric {metric!r} (one of: {', '.join(CONTEXT_METRICS)})"
            raise MeterError(msg)
        return self._sampler(gpu).context_arrays(metric)

    def _sampler(self, source: str) -> GpuSampler:
        sampler = self._by_source.get(source) or next(
            (s for s in self._samplers if s.source == source), None
        )
        if sampler is None:
            raise self._unknown(source)
        return sampler

    def _unknown(self, source: str) -> MeterError:
        known = ", ".join(self._by_source) or "none"
        return MeterError(f"the NVML meter has no source {source!r} (it has: {known})")
