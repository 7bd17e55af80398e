"""Every query's (issue, completion, samples, device), recorded cheaply and readable after a kill.

The LoadGen process (:mod:`infergy.runners.child`) records into a :class:`QueryRecorder`
(a :class:`RowLog` of 4 fields; a generative run adds two companion logs of token and phase
rows, :data:`TOKEN_FIELDS` and :data:`PHASE_FIELDS`, flushed and closed with it):
fixed-size numpy chunks under one lock (~1 µs a record), and a flusher thread appends the
new rows to a file every 20 ms. The parent reads that file (:func:`read_records`) during the
run for progress and after it, including after the child was killed: at most the last 20 ms
are lost then. A :class:`StatusBoard` is a small memory-mapped array of live counters
(samples in flight, queries and samples completed) that the parent polls to follow the load
(the simulated power meter) without any message per query.

Timestamps are ``time.monotonic_ns()`` of the recording process: CLOCK_MONOTONIC is
system-wide, so the parent converts them with ``SessionClock.from_monotonic``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
RECORD_FIELDS = 4  # issue_ns, complete_ns, samples, device slot
RECORD_BYTES = RECORD_FIELDS * 8
CHUNK_ROWS = 1 << 16
FLUSH_INTERVAL_S = 0.02

TOKEN_FIELDS = 6  # issue_ns, first_token_ns, complete_ns, input tokens, output tokens, slot
PHASE_FIELDS = 6  # start_ns, end_ns, kind (0 prefill, 1 decode), tokens, batch, slot

# StatusBoard slots
IN_FLIGHT, QUERIES_DONE, SAMPLES_DONE, QUERIES_ISSUED = 0, 1, 2, 3
ACTIVITY_PPM = 4
"""A workload that reports its own activity (the simulated generative one): 1 + parts per
million of "fully busy"; 0 while it reports none (the activity follows the samples in flight)."""
STATUS_SLOTS = 8


class StatusBoard:
    """Live counters shared with the parent through a memory-mapped file (or plain memory).

    Args:
        path: the file (created, zero-filled); None keeps the counters in this process only.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        if path is None:
            self.values: I64 = np.zeros(STATUS_SLOTS, dtype=np.int64)
        else:
            if not path.exists() or path.stat().st_size != STATUS_SLOTS * 8:
                path.write_bytes(bytes(STATUS_SLOTS * 8))
            self.values = np.memmap(path, dtype=np.int64, mode="r+", shape=(STATUS_SLOTS,))

    def reset(self) -> None:
        """Zero every counter (a new phase)."""
        self.values[:] = 0

    def set_activity(self, fraction: float) -> None:
        """The workload's own activity from now on (0-1)."""
        self.values[ACTIVITY_PPM] = 1 + round(min(1.0, max(0.0, fraction)) * 1_000_000)

    def activity(self) -> float | None:
        """The activity the workload reports, or None when it reports none."""
        v = int(self.values[ACTIVITY_PPM])
        return None if v <= 0 else (v - 1) / 1_000_000

    def read(self) -> tuple[int, int, int]:
        """(samples in flight, queries completed, samples completed)."""
        v = self.values
        return int(v[IN_FLIGHT]), int(v[QUERIES_DONE]), int(v[SAMPLES_DONE])


class RowLog:
    """Thread-safe append-only rows of ``fields`` int64s, flushed to ``path`` in the background.

    Args:
        fields: int64 values per row.
        path: the record file (truncated); None keeps the rows in memory only.
        on_error: called (from the flusher thread) when the file cannot be written (a full
            disk): the rows from then on would be lost, so the run should end now.
    """

    def __init__(
        self,
        fields: int,
        path: Path | None = None,
        on_error: Callable[[Path, OSError], None] | None = None,
    ) -> None:
        self.fields = fields
        self.path = path
        self._on_error = on_error
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._chunks: list[I64] = [np.zeros((CHUNK_ROWS, fields), dtype=np.int64)]
        self._n = 0
        self._flushed = 0
        self._fd = -1
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self.companions: list[RowLog] = []
        """Other logs of the same phase, flushed and closed with this one."""
        if path is not None:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            self._flusher = threading.Thread(
                target=self._flush_loop, name="infergy-recorder-flush", daemon=True
            )
            self._flusher.start()

    def __len__(self) -> int:
        return self._n

    def _row(self) -> I64:
        chunk, row = divmod(self._n, CHUNK_ROWS)
        if chunk == len(self._chunks):
            self._chunks.append(np.zeros((CHUNK_ROWS, self.fields), dtype=np.int64))
        self._n += 1
        row_view: I64 = self._chunks[chunk][row]
        return row_view

    def append(self, *values: int) -> None:
        """One row."""
        with self._lock:
            self._row()[:] = values

    def records(self) -> I64:
        """A copy of every row so far, shape ``(n, fields)``."""
        with self._lock:
            n = self._n
        return _gather(self._chunks, 0, n, self.fields)

    def flush(self) -> None:
        """Append the rows not yet written to the file (any thread), then the companions'."""
        with self._flush_lock:
            with self._lock:
                n = self._n
            if n > self._flushed and self._fd >= 0:
                os.write(self._fd, _gather(self._chunks, self._flushed, n, self.fields).tobytes())
                self._flushed = n
        for other in self.companions:
            other.flush()

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            try:
                self.flush()
            except OSError as err:
                if self._on_error is not None and self.path is not None:
                    self._on_error(self.path, err)
                return

    def close(self) -> None:
        """Stop the flusher, write what is left, close the file (idempotent); the companions too."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        with self._flush_lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            with self._lock:
                n = self._n
            if n > self._flushed:
                os.write(fd, _gather(self._chunks, self._flushed, n, self.fields).tobytes())
                self._flushed = n
            os.close(fd)
        for other in self.companions:
            other.close()


class QueryRecorder(RowLog):
    """Thread-safe append-only query log of one phase, flushed to ``path`` in the background.

    Rows are (issue_ns, complete_ns, samples, device slot); every call keeps the live
    counters of ``status`` up to date.

    Args:
        status: the live counters to keep up to date.
        path: the record file (truncated); None keeps the records in memory only.
        on_error: called (from the flusher thread) when the file cannot be written (a full
            disk): the records from then on would be lost, so the run should end now.
    """

    def __init__(
        self,
        status: StatusBoard,
        path: Path | None = None,
        on_error: Callable[[Path, OSError], None] | None = None,
    ) -> None:
        self.status = status
        status.reset()
        super().__init__(RECORD_FIELDS, path, on_error)

    def issued(self, samples: int) -> None:
        """``samples`` more samples are in flight (LoadGen issued them)."""
        with self._lock:
            self.status.values[IN_FLIGHT] += samples
            self.status.values[QUERIES_ISSUED] += 1

    def abandoned(self, samples: int) -> None:
        """``samples`` issued samples will not run (no record; no longer in flight)."""
        with self._lock:
            self.status.values[IN_FLIGHT] -= samples

    def completed(self, issue_ns: int, complete_ns: int, samples: int, slot: int) -> None:
        """One query of ``samples`` samples completed on device ``slot``."""
        with self._lock:
            self._row()[:] = (issue_ns, complete_ns, samples, slot)
            v = self.status.values
            v[IN_FLIGHT] -= samples
            v[QUERIES_DONE] += 1
            v[SAMPLES_DONE] += samples

    def completed_many(self, issue_ns: list[int], complete_ns: int, slot: int) -> None:
        """Several one-sample queries (a Server batch) completed together."""
        with self._lock:
            for t in issue_ns:
                self._row()[:] = (t, complete_ns, 1, slot)
            k = len(issue_ns)
            v = self.status.values
            v[IN_FLIGHT] -= k
            v[QUERIES_DONE] += k
            v[SAMPLES_DONE] += k


def _gather(chunks: list[I64], lo: int, hi: int, fields: int = RECORD_FIELDS) -> I64:
    if hi <= lo:
        return np.zeros((0, fields), dtype=np.int64)
    parts = []
    for c in range(lo // CHUNK_ROWS, (hi - 1) // CHUNK_ROWS + 1):
        a = max(lo - c * CHUNK_ROWS, 0)
        b = min(hi - c * CHUNK_ROWS, CHUNK_ROWS)
        parts.append(chunks[c][a:b])
    out: I64 = np.concatenate(parts).copy()
    return out


def read_records(path: Path, fields: int = RECORD_FIELDS) -> I64:
    """Rows written so far to ``path`` (a torn last row is ignored); ``(n, fields)``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return np.zeros((0, fields), dtype=np.int64)
    usable = len(data) - len(data) % (8 * fields)
    return np.frombuffer(data[:usable], dtype=np.int64).reshape(-1, fields).copy()
