"""The system under test: LoadGen callbacks, batching, and dispatch to per-device workers.

- **SingleStream / MultiStream**: LoadGen waits for each query before the next, so the query
  runs inline on LoadGen's issue thread (no thread hand-off: a wake-up costs ~30 µs, and
  libs.md measured 332k QPS inline). Devices take turns. LoadGen is told before our own
  record is written: its latency clock stops in that call (H100, batch 1: LoadGen's p90 sat
  30 µs above ours with the other order, 9 µs with this one).
- **Offline / Server**: samples go into one :class:`WorkPool`; every device has
  ``workers_per_device`` threads (one executor each: a CUDA stream, an execution context) that
  take the next batch when they are free. A free worker is, by construction, on the
  least-loaded device, so the pool *is* the least-loaded dispatch. A worker takes up to
  ``max_batch`` samples; in Server it waits up to ``batching_timeout`` after the oldest pending
  sample to fill a batch (Offline has nothing more to wait for).
- **Offline completion is deferred** to one completer thread: telling LoadGen about 256 samples
  costs ~0.3 ms of Python (response objects, ``QuerySamplesComplete``), and done on the worker it
  leaves a GPU idle that long per batch (H100, batch 256, one worker: 0.970 of the tight loop
  before, 0.994 after). Not on a CPU backend: there the completer would take cores from the
  inference itself. The completion timestamp is still taken on the worker, right after the
  synchronisation. Server completes on the worker: there the hop's wake-up would add to every
  latency LoadGen measures.

Every query is recorded (issue and completion ``time.monotonic_ns()``, samples, device slot)
in a :class:`~infergy.runners.recorder.QueryRecorder`. An Offline query is recorded per batch
(each batch's samples were issued with the one query, at its issue time), a Server query per
sample. An exception inside a LoadGen callback would crash the process (libs.md), so every
callback catches everything, still completes its samples (LoadGen must not hang), and keeps
the first error for the engine to report.
"""

from __future__ import annotations

import collections
import itertools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from infergy.runners.backends.base import Backend
from infergy.runners.recorder import QueryRecorder

Complete = Callable[[Sequence[int]], None]
"""Tells LoadGen these sample ids are done (``lg.QuerySamplesComplete``)."""


@dataclass
class _Segment:
    ids: Sequence[int]
    issue_ns: int
    arrived_ns: int
    pos: int = 0


@dataclass
class Failure:
    """The first error raised inside a callback or worker, and how many there were."""

    first: str | None = None
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, where: str, err: BaseException) -> None:
        """Count one error; keep the first message."""
        with self.lock:
            self.count += 1
            if self.first is None:
                self.first = f"{where}: {type(err).__name__}: {err}"


class WorkPool:
    """Pending samples, taken in batches by free workers (Offline and Server).

    Args:
        max_batch: the largest batch a worker takes.
        batching_timeout_ns: how long to wait for a full batch after the oldest pending sample.
    """

    def __init__(self, max_batch: int, batching_timeout_ns: int) -> None:
        self.max_batch = max_batch
        self.timeout_ns = batching_timeout_ns
        self._pending: collections.deque[_Segment] = collections.deque()
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False

    def put(self, ids: Sequence[int], issue_ns: int) -> None:
        """Add one query's samples (called on LoadGen's issue thread)."""
        with self._cond:
            was_empty = self._count == 0
            self._pending.append(_Segment(ids, issue_ns, time.monotonic_ns()))
            self._count += len(ids)
            # Wake a worker only when it has something new to decide: work appeared, or a batch
            # is full. Waking waiters on every Server arrival would cost a context switch each.
            if was_empty or self._count >= self.max_batch:
                self._cond.notify(1 if self._count < 2 * self.max_batch else 8)

    def take(self) -> list[tuple[int, Sequence[int]]] | None:
        """Wait for a batch; returns ``[(issue_ns, ids), ...]`` or None once closed and empty."""
        with self._cond:
            while True:
                if self._count == 0:
                    if self._closed:
                        return None
                    self._cond.wait()
                    continue
                if self._count >= self.max_batch or self.timeout_ns <= 0 or self._closed:
                    break
                wait_ns = self._pending[0].arrived_ns + self.timeout_ns - time.monotonic_ns()
                if wait_ns <= 0:
                    break
                self._cond.wait(wait_ns / 1e9)
            parts = self._take_locked()
            if self._count > 0:
                self._cond.notify(1)  # more work left: let another free worker start on it
            return parts

    def _take_locked(self) -> list[tuple[int, Sequence[int]]]:
        parts: list[tuple[int, Sequence[int]]] = []
        room = self.max_batch
        while room and self._pending:
            seg = self._pending[0]
            k = min(room, len(seg.ids) - seg.pos)
            parts.append((seg.issue_ns, seg.ids[seg.pos : seg.pos + k]))
            seg.pos += k
            room -= k
            if seg.pos == len(seg.ids):
                self._pending.popleft()
        self._count -= self.max_batch - room
        return parts

    def take_all(self) -> list[int]:
        """Remove and return every pending sample id (a calibration run cut short)."""
        with self._cond:
            ids = [i for seg in self._pending for i in seg.ids[seg.pos :]]
            self._pending.clear()
            self._count = 0
            return ids

    def close(self) -> None:
        """No more work: workers drain what is pending, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Sut:
    """Runs LoadGen's queries on the backends and records them.

    Args:
        backends: one loaded backend per device (slot = position in this list).
        workers_per_device: executors per device for Offline/Server.
        recorder: where every query goes.
        complete: reports sample ids to LoadGen as done.
        pooled: True for Offline/Server (batching workers), False for inline execution.
        batching_timeout_ns: Server batching wait (0 for Offline).
        max_batch: the largest batch (the configured batch size).
        defer_complete: report completions to LoadGen from a completer thread (Offline).
    """

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        workers_per_device: int,
        recorder: QueryRecorder,
        complete: Complete,
        pooled: bool,
        batching_timeout_ns: int,
        max_batch: int,
        defer_complete: bool = False,
    ) -> None:
        self.backends = list(backends)
        self.recorder = recorder
        self.complete = complete
        self.max_batch = max_batch
        self.failure = Failure()
        self.pooled = pooled
        self._turn = itertools.cycle(range(len(self.backends)))
        self.pool = WorkPool(max_batch, batching_timeout_ns)
        self._threads: list[threading.Thread] = []
        self._done: queue.SimpleQueue[list[int] | None] | None = None
        self._completer: threading.Thread | None = None
        if pooled and defer_complete:
            self._done = queue.SimpleQueue()
            self._completer = threading.Thread(
                target=self._complete_loop,
                args=(self._done,),
                name="infergy-completer",
                daemon=True,
            )
            self._completer.start()
        if pooled:
            for slot, _backend in enumerate(self.backends):
                for w in range(workers_per_device):
                    t = threading.Thread(
                        target=self._work, args=(slot, w), name=f"infergy-worker-{slot}.{w}",
                        daemon=True,
                    )  # fmt: skip
                    self._threads.append(t)
                    t.start()

    # -- LoadGen callbacks (LoadGen's threads; never raise) -----------------------------------

    def issue(self, ids: Sequence[int]) -> None:
        """``issue_queries``: one query of ``ids`` samples."""
        issue_ns = time.monotonic_ns()
        try:
            self.recorder.issued(len(ids))
            if self.pooled:
                self.pool.put(ids, issue_ns)
                return
            slot, done_ns = self._inline(ids)
        except BaseException as err:
            self.failure.add("issue", err)
            self._complete_safely(ids)
            return
        # LoadGen first: its latency clock stops in this call; our record already has done_ns.
        self._complete_safely(ids)
        try:
            self.recorder.completed(issue_ns, done_ns, len(ids), slot)
        except BaseException as err:
            self.failure.add("record", err)

    def flush(self) -> None:
        """``flush_queries``: nothing is held back beyond the batching timeout."""

    def _inline(self, ids: Sequence[int]) -> tuple[int, int]:
        """Runs the query on the next device; returns (slot, completion ns)."""
        slot = next(self._turn)
        backend = self.backends[slot]
        for lo in range(0, len(ids), self.max_batch):
            backend.infer(min(self.max_batch, len(ids) - lo), 0)
        return slot, time.monotonic_ns()

    def abandon(self) -> int:
        """Complete every pending sample at once without running it; returns how many.

        Ends the warmup's calibration run at its deadline: LoadGen has no abort, so the
        samples not yet taken are reported done (unrecorded; that run's result is discarded).
        """
        ids = self.pool.take_all()
        if ids:
            self.recorder.abandoned(len(ids))
            self._complete_safely(ids)
        return len(ids)

    def _complete_safely(self, ids: Sequence[int]) -> None:
        try:
            self.complete(ids)
        except BaseException as err:
            self.failure.add("complete", err)

    # -- pooled workers -----------------------------------------------------------------------

    def _complete_loop(self, done: queue.SimpleQueue[list[int] | None]) -> None:
        while (ids := done.get()) is not None:
            self._complete_safely(ids)

    def _work(self, slot: int, worker: int) -> None:
        backend = self.backends[slot]
        done = self._done
        while (parts := self.pool.take()) is not None:
            ids = [i for _, chunk in parts for i in chunk]
            try:
                backend.infer(len(ids), worker)
            except BaseException as err:
                self.failure.add(f"{backend.device} worker {worker}", err)
            done_ns = time.monotonic_ns()
            for issue_ns, chunk in parts:
                self.recorder.completed(issue_ns, done_ns, len(chunk), slot)
            if done is not None:
                done.put(ids)
            else:
                self._complete_safely(ids)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the workers after they drain the pool, then the completer (idempotent)."""
        self.pool.close()
        for t in self._threads:
            t.join(timeout_s)
        self._threads = [t for t in self._threads if t.is_alive()]
        if self._completer is not None and self._done is not None:
            self._done.put(None)  # after every worker's last put: FIFO drains them first
            self._completer.join(timeout_s)
            if not self._completer.is_alive():
                self._completer = None

    @property
    def alive_threads(self) -> int:
        """Workers (and the completer) still running (0 after a clean close)."""
        completer = self._completer is not None and self._completer.is_alive()
        return sum(t.is_alive() for t in self._threads) + completer


def loadgen_complete(lg: Any) -> Complete:
    """``QuerySamplesComplete`` for sample ids, with empty responses (performance mode)."""
    response = lg.QuerySampleResponse
    samples_complete = lg.QuerySamplesComplete

    def complete(ids: Sequence[int]) -> None:
        samples_complete([response(i, 0, 0) for i in ids])

    return complete
