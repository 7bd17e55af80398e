"""The generative SUT: LoadGen's samples through continuous batching, with token latencies.

Every scenario (Offline, Server, SingleStream) goes through one :class:`GenPool`: LoadGen's
issue thread puts the samples there (each sample's prompt and output length come from the
run's :class:`~infergy.core.lengths.PromptSet`, by its index), and every executor (a worker
thread per device and ``workers_per_device``) runs the loop of :mod:`infergy.runners.gen_sched`:
admit waiting samples into free KV cache slots and prefill them together (their first token:
LoadGen's ``FirstTokenComplete``), then one decode step for every running sequence; a sequence
that produced its output length completes with its token count (``QuerySamplesComplete`` with
``n_tokens``). A SingleStream query waits for a worker's wake-up (tens of microseconds against
a query of hundreds of milliseconds).

Records, on this process's monotonic clock: the query log (one row per sample: issue,
completion, 1 sample, device), the token log (issue, first token, completion, prompt and output
tokens, device) and the phase log (every step's start, end, kind, tokens, batch, device), the
last two as companions of the first (:mod:`infergy.runners.recorder`). LoadGen is told before
our records are written (its latency clock stops in that call). Every callback and worker
catches everything, completes its samples (LoadGen must never wait for them) and keeps the
first error. A simulated backend's step activity goes to the status board for the simulated
power meter.

:func:`tight_generation` is the same continuous batching without LoadGen, threads or records:
the engine's own tokens/s (the warm-up's calibration and the harness-efficiency benchmark).
"""

from __future__ import annotations

import collections
import functools
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from infergy.core.gen_logs import DECODE, PREFILL
from infergy.core.lengths import PromptSet
from infergy.core.llm import MAX_PREFILL_TOKENS
from infergy.runners.backends.gen_base import GenerativeBackend
from infergy.runners.gen_sched import Pending, Running, SlotBatcher, admissible
from infergy.runners.lg_calls import LoadgenCalls
from infergy.runners.recorder import QueryRecorder, RowLog, StatusBoard
from infergy.runners.sut import Failure


class GenPool:
    """Samples waiting for a KV cache slot, shared by every executor (oldest first)."""

    def __init__(self) -> None:
        self._pending: collections.deque[Pending] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, items: Sequence[Pending]) -> None:
        """Add samples (LoadGen's issue thread)."""
        with self._cond:
            self._pending.extend(items)
            self._cond.notify(len(items))

    def take(self, free_slots: int, budget_tokens: int, *, wait: bool) -> list[Pending] | None:
        """What one prefill step admits; waits for work when ``wait``; None once closed."""
        with self._cond:
            while wait and not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending and self._closed:
                return None
            prompts = [p.input_tokens for p in _head(self._pending, free_slots)]
            k = admissible(prompts, free_slots, budget_tokens)
            taken = [self._pending.popleft() for _ in range(k)]
            if self._pending and k:
                self._cond.notify(1)  # more left: another free executor may start on it
            return taken

    def take_all(self) -> list[Pending]:
        """Remove and return everything waiting (a run cut short)."""
        with self._cond:
            items = list(self._pending)
            self._pending.clear()
            return items

    def close(self) -> None:
        """No more samples: executors finish what they have, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _head(items: collections.deque[Pending], n: int) -> list[Pending]:
    out: list[Pending] = []
    for p in items:
        if len(out) >= n:
            break
        out.append(p)
    return out


@dataclass
class Activity:
    """Each executor's current activity (simulated backends); their mean goes to the board."""

    status: StatusBoard
    executors: int
    values: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.values = [0.0] * self.executors

    def set(self, key: int, fraction: float) -> None:
        """Executor ``key`` runs at ``fraction`` from now on."""
        with self.lock:
            if self.values[key] == fraction:
                return
            self.values[key] = fraction
            self.status.set_activity(sum(self.values) / self.executors)

    def idle(self) -> None:
        """Every executor is idle."""
        for key in range(self.executors):
            self.set(key, 0.0)


def attach_activity(
    backends: Sequence[GenerativeBackend], workers_per_device: int, status: StatusBoard
) -> Activity:
    """Route the backends' step activities (simulated ones report them) to ``status``."""
    activity = Activity(status, len(backends) * workers_per_device)
    for slot, backend in enumerate(backends):
        sink = getattr(backend, "set_activity_sink", None)
        if callable(sink):
            base = slot * workers_per_device
            sink(lambda w, a, base=base: activity.set(base + w, a))
    return activity


class GenSut:
    """LoadGen's SUT for a generative backend; see the module docstring.

    Args:
        backends: one loaded generative backend per device (slot = position).
        workers_per_device: executors per device (each with its own cache slots).
        recorder: the query log (its companions: ``tokens`` and ``phases``).
        tokens: the token log (:data:`~infergy.runners.recorder.TOKEN_FIELDS` a row).
        phases: the phase log (:data:`~infergy.runners.recorder.PHASE_FIELDS` a row).
        calls: LoadGen's completion and first-token calls.
        prompts: every sample index's prompt and output length.
        max_batch: cache slots per executor.
        status: the live counters (the simulated activity goes there too).
    """

    def __init__(
        self,
        backends: Sequence[GenerativeBackend],
        *,
        workers_per_device: int,
        recorder: QueryRecorder,
        tokens: RowLog,
        phases: RowLog,
        calls: LoadgenCalls,
        prompts: PromptSet,
        max_batch: int,
        status: StatusBoard,
    ) -> None:
        self.backends = list(backends)
        self.workers = workers_per_device
        self.recorder, self.tokens, self.phases = recorder, tokens, phases
        self.calls = calls
        self.prompts = prompts
        self.max_batch = max_batch
        self.failure = Failure()
        self.pool = GenPool()
        self._abandoning = threading.Event()
        self._activity = attach_activity(self.backends, workers_per_device, status)
        self._threads = [
            threading.Thread(target=self._work, args=(slot, w), daemon=True,
                             name=f"infergy-gen-{slot}.{w}")
            for slot in range(len(self.backends))
            for w in range(workers_per_device)
        ]  # fmt: skip
        for t in self._threads:
            t.start()

    # -- LoadGen callbacks (LoadGen's threads; never raise) -----------------------------------

    def issue(self, ids: Sequence[int], indices: Sequence[int]) -> None:
        """``issue_queries`` (``ConstructFastSUT``): one query's sample ids and indices."""
        issue_ns = time.monotonic_ns()
        try:
            self.recorder.issued(len(ids))
            items = []
            for sample_id, index in zip(ids, indices, strict=True):
                n_in, n_out = self.prompts.sample(int(index))
                items.append(Pending(int(sample_id), issue_ns, n_in, n_out))
            if self._abandoning.is_set():
                self._drop([p.sample_id for p in items])
                return
            self.pool.put(items)
        except BaseException as err:
            self.failure.add("issue", err)
            self._tell(lambda: self.calls.complete(list(ids)))

    def flush(self) -> None:
        """``flush_queries``: nothing is held back."""

    def abandon(self) -> int:
        """Complete every waiting and running sample at once without running it further."""
        self._abandoning.set()
        ids = [p.sample_id for p in self.pool.take_all()]
        self._drop(ids)
        return len(ids)

    def close(self, timeout_s: float = 10.0) -> None:
        """Let the executors finish what they hold, then stop them (idempotent)."""
        self.pool.close()
        for t in self._threads:
            t.join(timeout_s)
        self._threads = [t for t in self._threads if t.is_alive()]

    @property
    def alive_threads(self) -> int:
        """Executors still running (0 after a clean close)."""
        return sum(t.is_alive() for t in self._threads)

    # -- executors ----------------------------------------------------------------------------

    def _work(self, slot: int, worker: int) -> None:
        backend = self.backends[slot]
        batcher = SlotBatcher(self.max_batch)
        key = slot * self.workers + worker
        while True:
            if self._abandoning.is_set() and not batcher.idle:
                self._drop([r.pending.sample_id for r in batcher.drop_all()])
            if batcher.idle:
                self._activity.set(key, 0.0)
            new = self.pool.take(batcher.free, MAX_PREFILL_TOKENS, wait=batcher.idle)
            if new is None:
                break
            try:
                self._step(backend, batcher, new, slot, worker)
            except BaseException as err:
                self.failure.add(f"{backend.device} worker {worker}", err)
                lost = [r.pending.sample_id for r in batcher.drop_all()]
                lost += [p.sample_id for p in new if p.sample_id not in lost]
                self._drop(lost)
        self._activity.set(key, 0.0)

    def _step(
        self,
        backend: GenerativeBackend,
        batcher: SlotBatcher,
        new: list[Pending],
        slot: int,
        worker: int,
    ) -> None:
        if new:
            seqs = batcher.admit(new)
            prompts = [r.pending.input_tokens for r in seqs]
            t0 = time.monotonic_ns()
            backend.prefill([r.slot for r in seqs], prompts, worker)
            t1 = time.monotonic_ns()
            for r in seqs:  # LoadGen first: its clock stops in the call
                self._tell(functools.partial(self.calls.first_token, r.pending.sample_id))
            self.phases.append(t0, t1, PREFILL, sum(prompts), len(seqs), slot)
            self._finished(batcher.prefilled(seqs, t1), t1, slot)
        running = batcher.running
        if running:
            t0 = time.monotonic_ns()
            backend.decode([r.slot for r in running], [r.context_tokens for r in running], worker)
            t1 = time.monotonic_ns()
            self.phases.append(t0, t1, DECODE, len(running), len(running), slot)
            self._finished(batcher.decoded(running), t1, slot)

    def _finished(self, done: list[Running], t_ns: int, slot: int) -> None:
        for r in done:
            p = r.pending
            self._tell(functools.partial(self.calls.complete_tokens, p.sample_id, r.produced))
            self.recorder.completed(p.issue_ns, t_ns, 1, slot)
            self.tokens.append(p.issue_ns, r.first_ns, t_ns, p.input_tokens, r.produced, slot)

    def _drop(self, ids: list[int]) -> None:
        """Samples that will not complete: no record, but LoadGen is told they are done."""
        if ids:
            self.recorder.abandoned(len(ids))
            self._tell(lambda: self.calls.complete(ids))

    def _tell(self, call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as err:
            self.failure.add("complete", err)


@dataclass(frozen=True)
class GenerationStats:
    """A tight generation loop's figures (one executor, or several together)."""

    samples: int
    output_tokens: int
    elapsed_s: float
    latencies_ns: list[int]
    steady_samples_per_s: float
    steady_tokens_per_s: float

    @property
    def median_latency_ns(self) -> int:
        """Median sample latency (prefill to last token)."""
        return int(statistics.median(self.latencies_ns)) if self.latencies_ns else 0


def tight_generation(
    backends: Sequence[GenerativeBackend],
    *,
    prompts: PromptSet,
    max_batch: int,
    workers_per_device: int,
    duration_s: float,
    min_samples: int = 1,
    recorder: QueryRecorder | None = None,
) -> GenerationStats:
    """Continuous batching with an endless supply of samples for ``duration_s``, no LoadGen.

    Every executor keeps its slots full from the prompt set (in order, wrapping), runs the
    same steps as the SUT, and counts what completes; the figures over the second half are the
    steady rates (ramp-up excluded). With a ``recorder``, every sample is recorded as
    issued at its admission (the warm-up's progress).
    """
    lock = threading.Lock()
    done: list[tuple[int, int, int]] = []  # (completion ns, tokens, latency ns)
    errors: list[BaseException] = []
    counter = iter(range(1 << 62))
    t_start = time.monotonic_ns()
    deadline = t_start + round(duration_s * 1e9)

    def loop(slot: int, worker: int) -> None:
        backend, batcher = backends[slot], SlotBatcher(max_batch)
        mine: list[tuple[int, int, int]] = []
        try:
            while time.monotonic_ns() < deadline or len(mine) < min_samples:
                with lock:
                    waiting = [prompts.sample(next(counter)) for _ in range(batcher.free)]
                k = admissible([w[0] for w in waiting], batcher.free, MAX_PREFILL_TOKENS)
                now = time.monotonic_ns()
                new = [Pending(0, now, a, b) for a, b in waiting[:k]]
                if new:
                    seqs = batcher.admit(new)
                    if recorder is not None:
                        for _ in new:
                            recorder.issued(1)
                    backend.prefill([r.slot for r in seqs],
                                    [r.pending.input_tokens for r in seqs], worker)  # fmt: skip
                    batcher.prefilled(seqs, time.monotonic_ns())
                running = batcher.running
                if running:
                    backend.decode([r.slot for r in running],
                                   [r.context_tokens for r in running], worker)  # fmt: skip
                    t1 = time.monotonic_ns()
                    for r in batcher.decoded(running):
                        mine.append((t1, r.produced, t1 - r.pending.issue_ns))
                        if recorder is not None:
                            recorder.completed(r.pending.issue_ns, t1, 1, slot)
        except BaseException as err:
            errors.append(err)
        with lock:
            done.extend(mine)

    threads = [
        threading.Thread(target=loop, args=(s, w), name=f"infergy-genloop-{s}.{w}", daemon=True)
        for s in range(len(backends))
        for w in range(workers_per_device)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_end = time.monotonic_ns()
    if errors:
        raise errors[0]
    mid = (t_start + t_end) // 2
    late = [d for d in done if d[0] > mid]
    span_s = (t_end - mid) / 1e9
    elapsed_s = (t_end - t_start) / 1e9
    if len(late) >= 2 and span_s > 0:
        sps, tps = len(late) / span_s, sum(d[1] for d in late) / span_s
    else:
        sps, tps = len(done) / elapsed_s, sum(d[1] for d in done) / elapsed_s
    return GenerationStats(len(done), sum(d[1] for d in done), elapsed_s,
                           [d[2] for d in done], sps, tps)  # fmt: skip


@dataclass(frozen=True)
class TokenFloor:
    """The fastest a sequence can go: one prompt's prefill, one decode step, alone (ns)."""

    ttft_ns: int
    tpot_ns: int


def token_floor(
    backend: GenerativeBackend, prompts: PromptSet, *, repeats: int = 3, decode_steps: int = 4
) -> TokenFloor:
    """Median of a few batch-1 prefills (a typical prompt) and decode steps on ``backend``."""
    prompt = int(statistics.median(int(n) for n in prompts.input_tokens))
    ttft, tpot = [], []
    for _ in range(repeats):
        t0 = time.monotonic_ns()
        backend.prefill([0], [prompt], 0)
        ttft.append(time.monotonic_ns() - t0)
        for k in range(1, decode_steps + 1):
            t0 = time.monotonic_ns()
            backend.decode([0], [prompt + k], 0)
            tpot.append(time.monotonic_ns() - t0)
    return TokenFloor(int(statistics.median(ttft)), int(statistics.median(tpot)))
