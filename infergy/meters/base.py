"""What every power source looks like to the rest of infergy: the ``Meter`` Protocol.

A meter owns one or more *sources* (``gpu0``, ``gpu1``, ``ac``, ``cpu``...). It samples them
while its :meth:`Meter.run` coroutine runs inside the caller's TaskGroup, and appends every
sample, stamped by the one :class:`~infergy.core.clock.SessionClock`, to a bounded
:class:`RingBuffer` per source.
Anyone can take a :class:`~infergy.core.trace.Trace` of a source at any time with
:meth:`Meter.snapshot`; the core analyses those traces. Blocking calls (NVML, serial I/O, sysfs)
run off the event loop. Failures are counted by kind in :meth:`Meter.health`, never raised
out of ``run`` for a single bad read, and never turned into zeros.

Example:
    >>> async def measure(meter: Meter) -> Trace:            # doctest: +SKIP
    ...     async with asyncio.TaskGroup() as tg:
    ...         task = tg.create_task(meter.run(), name=f"meter[{meter.name}]")
    ...         await asyncio.sleep(10)
    ...         task.cancel()
    ...     return meter.snapshot("gpu0")
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from infergy.core.trace import Semantics, Trace
from infergy.errors import MeterError

DEFAULT_CAPACITY = 1 << 20
"""Samples kept per source: ~5.8 h at 50 Hz; older samples are dropped first (and counted)."""


@dataclass(frozen=True)
class SourceInfo:
    """Static description of one source.

    Attributes:
        name: stable source name (``gpu0``, ``ac``, ``cpu``, ``sim``...).
        kind: ``nvml | analyzer | rapl | sim | replay``.
        device: what is measured, for people (``NVIDIA H100 80GB HBM3 GPU-1a2b...``).
        semantics: how the source's values integrate.
        nominal_period_ns: the update period the source is sampled at.
        unit: ``W`` (power) or ``J`` (a counter).
        simulated: True for anything that is not a measurement (must be shown as such).
        details: free-form facts (UUID, PCI bus id, MIG mode, analyzer identity...).
    """

    name: str
    kind: str
    device: str
    semantics: Semantics
    nominal_period_ns: int
    unit: str
    simulated: bool = False
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass
class MeterHealth:
    """Live health of one source: up or not, errors by kind, last error, sample counts."""

    up: bool = False
    errors: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None
    samples: int = 0
    dropped: int = 0

    def error(self, kind: str, message: str) -> None:
        """Count one error of ``kind`` (``not_supported``, ``gpu_lost``, ``timeout``...)."""
        self.errors[kind] += 1
        self.last_error = message


class RingBuffer:
    """A bounded, thread-safe buffer of samples of one source (oldest dropped first).

    Appends come from a sampling task or a worker thread; snapshots from anywhere. Memory is
    fixed at construction: three float64/int64 arrays of ``capacity``. Samples are stored in
    append order, which is time order as long as timestamps never go backwards; the buffer
    remembers the last time they did, so :meth:`after` can binary-search when it may.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, with_uncertainty: bool = False) -> None:
        if capacity <= 0:
            msg = f"ring buffer capacity must be positive, got {capacity}"
            raise ValueError(msg)
        self.capacity = capacity
        # Written once now, so the memory is really committed at construction: a service's
        # resident size is then flat from the start instead of creeping up for hours.
        self._t = np.full(capacity, 0, dtype=np.int64)
        self._v = np.full(capacity, 0.0, dtype=np.float64)
        self._u = np.full(capacity, 0.0, dtype=np.float64) if with_uncertainty else None
        self._n = 0  # total appended
        self._last_t = 0  # newest timestamp (valid when _n > 0), a Python int for cheap compares
        self._descent_n = 0  # append number of the last sample older than its predecessor
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return min(self._n, self.capacity)

    @property
    def dropped(self) -> int:
        """Samples overwritten because the buffer was full."""
        return max(0, self._n - self.capacity)

    @property
    def last_t_ns(self) -> int | None:
        """Timestamp of the newest sample, or None when empty."""
        with self._lock:
            return None if self._n == 0 else int(self._t[(self._n - 1) % self.capacity])

    def append(self, t_ns: int, value: float, uncertainty: float = float("nan")) -> None:
        """Add one sample (timestamps must not go backwards; equal ones are kept, last wins)."""
        with self._lock:
            i = self._n % self.capacity
            self._t[i] = t_ns
            self._v[i] = value
            if self._u is not None:
                self._u[i] = uncertainty
            if self._n and t_ns < self._last_t:
                self._descent_n = self._n
            self._last_t = int(t_ns)
            self._n += 1

    def extend(
        self, t_ns: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray
    ) -> None:
        """Add many samples at once (e.g. an NVML sample-buffer read), in at most two copies."""
        t = np.asarray(t_ns, dtype=np.int64).ravel()
        v = np.asarray(values, dtype=np.float64).ravel()
        if t.size != v.size:
            msg = f"extend: {t.size} timestamps but {v.size} values"
            raise ValueError(msg)
        if t.size == 0:
            return
        with self._lock:
            n, cap, m = self._n, self.capacity, int(t.size)
            steps = np.flatnonzero(t[1:] < t[:-1])
            if steps.size:
                self._descent_n = n + int(steps[-1]) + 1
            elif n and int(t[0]) < self._last_t:
                self._descent_n = n
            keep = min(m, cap)  # more than a ring's worth: only the newest fit
            first = n + m - keep  # append number of the first sample kept
            i = first % cap
            head = min(keep, cap - i)
            src = slice(m - keep, m - keep + head)
            self._t[i : i + head], self._v[i : i + head] = t[src], v[src]
            rest = slice(m - keep + head, m)  # what wraps around to the front
            self._t[: keep - head], self._v[: keep - head] = t[rest], v[rest]
            if self._u is not None:
                self._u[i : i + head] = np.nan
                self._u[: keep - head] = np.nan
            self._last_t = int(t[-1])
            self._n = n + m

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Copies of (t_ns, values, uncertainty), oldest first."""
        with self._lock:
            n, cap = self._n, self.capacity
            if n <= cap:
                sl = slice(0, n)
                t, v = self._t[sl].copy(), self._v[sl].copy()
                u = None if self._u is None else self._u[sl].copy()
            else:
                start = n % cap
                order = np.r_[start:cap, 0:start]
                t, v = self._t[order], self._v[order]
                u = None if self._u is None else self._u[order]
        return t, v, u

    def trace(
        self,
        semantics: Semantics,
        nominal_period_ns: int,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> Trace:
        """The buffered samples (optionally only those in [start, end]) as a core Trace."""
        t, v, u = self.arrays()
        lo = 0 if start_ns is None else int(np.searchsorted(t, start_ns, side="left"))
        hi = t.size if end_ns is None else int(np.searchsorted(t, end_ns, side="right"))
        trace, _ = Trace.from_unsorted(
            t[lo:hi], v[lo:hi], semantics, nominal_period_ns, None if u is None else u[lo:hi]
        )
        return trace

    def after(self, after_ns: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Copies of (t_ns, values) of the samples with ``t_ns > after_ns``, oldest first.

        The same samples as the tail of :meth:`trace` (a repeated timestamp keeps its last
        sample), in O(log n + k) for k newer samples: the ring is binary-searched in place
        instead of copied whole. While a sample older than its predecessor is still held (a
        clock step), the ring is not sorted and this falls back to sorting a full copy.
        """
        with self._lock:
            n, cap = self._n, self.capacity
            if n == 0:
                return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
            sorted_ring = self._descent_n <= max(0, n - cap)
            if sorted_ring:
                if after_ns >= self._last_t:
                    return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
                # physical [lo, hi) ranges in time order: the older part first once wrapped
                start = n % cap if n > cap else 0
                parts = [(start, cap), (0, start)] if n > cap else [(0, n)]
                chunks: list[tuple[int, int]] = []
                for lo, hi in parts:
                    if lo == hi:
                        continue
                    if chunks:  # every sample after the first match is newer
                        chunks.append((lo, hi))
                        continue
                    if int(self._t[hi - 1]) <= after_ns:
                        continue  # all of this part is old
                    first = lo + int(np.searchsorted(self._t[lo:hi], after_ns, side="right"))
                    chunks.append((first, hi))
                t = np.concatenate([self._t[lo:hi] for lo, hi in chunks])
                v = np.concatenate([self._v[lo:hi] for lo, hi in chunks])
        if not sorted_ring:
            t_all, v_all, _u = self.arrays()
            order = np.argsort(t_all, kind="stable")
            t, v = t_all[order], v_all[order]
            lo = int(np.searchsorted(t, after_ns, side="right"))
            t, v = t[lo:], v[lo:]
        if t.size > 1:  # repeated timestamps keep the last sample, as Trace.from_unsorted does
            keep = np.ones(t.size, dtype=bool)
            keep[:-1] = t[1:] != t[:-1]
            if not keep.all():
                t, v = t[keep], v[keep]
        return t, v


@runtime_checkable
class Meter(Protocol):
    """A power source (or a group of them, one per device) that samples while ``run`` runs."""

    name: str
    """The meter's name (``nvml``, ``ptd``, ``rapl``, ``sim``, ``replay``)."""

    def describe(self) -> Sequence[SourceInfo]:
        """The sources this meter provides (known after construction, before ``run``)."""
        ...

    async def run(self) -> None:
        """Sample every source until cancelled. Put it in the caller's TaskGroup."""
        ...

    def snapshot(
        self, source: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> Trace:
        """The samples of ``source`` so far (optionally within [start, end]) as a Trace."""
        ...

    def health(self) -> Mapping[str, MeterHealth]:
        """Health per source name."""
        ...


@runtime_checkable
class DenseAtEdges(Protocol):
    """A meter whose costly reference is read sparsely, and densely around a window's edges.

    The NVML meter reads its energy counter every ~1 s and lets the 20-ms samples give the
    shape in between; a session asks for dense reads just before and after its window's
    edges. Meters without such a reference do not implement this and are not asked.
    """

    def dense_counter(self, for_s: float | None = None, gpus: Sequence[str] | None = None) -> None:
        """Read densely for ``for_s`` from now (default: the meter's span), for ``gpus``."""
        ...


class OneSourceMeter:
    """The data-out half shared by meters with one buffered source (sim, replay).

    Subclasses set ``name`` (used in errors), ``source``, ``_buffer`` and ``_health``.
    """

    name: str
    source: str
    _buffer: RingBuffer
    _health: MeterHealth

    def samples_after(
        self, source: str, after_ns: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """(t_ns, values) of the samples with ``t_ns > after_ns`` (no full-buffer copy)."""
        self._check(source)
        return self._buffer.after(after_ns)

    def _check(self, source: str) -> None:
        if source != self.source:
            msg = f"the {self.name} meter has no source {source!r} (it has: {self.source})"
            raise MeterError(msg)

    def health(self) -> Mapping[str, MeterHealth]:
        """Health of the one source."""
        self._health.dropped = self._buffer.dropped
        return {self.source: self._health}
