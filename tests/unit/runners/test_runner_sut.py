from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from infergy.runners.backends.base import Limits, batch_sizes_for, padded_batch
from infergy.runners.recorder import QueryRecorder, StatusBoard
from infergy.runners.sut import Sut, WorkPool


class FakeBackend:
    """A backend that sleeps per call and remembers the batch sizes it ran."""

    def __init__(self, device: str = "cpu", call_s: float = 0.0, fail_on: int | None = None):
        self.device = device
        self.call_s = call_s
        self.fail_on = fail_on
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def load(self) -> None:
        pass

    def infer(self, n: int, worker: int = 0) -> None:
        with self.lock:
            self.batches.append(n)
        if self.fail_on is not None and n == self.fail_on:
            raise RuntimeError("boom")
        if self.call_s:
            time.sleep(self.call_s)

    def limits(self) -> Limits:
        return Limits(64, (3,))

    def describe(self) -> dict[str, object]:
        return {"device": self.device}

    def close(self) -> None:
        pass


class Done:
    def __init__(self) -> None:
        self.ids: list[int] = []
        self.lock = threading.Lock()
        self.all = threading.Event()
        self.expect = 0

    def __call__(self, ids: Sequence[int]) -> None:
        with self.lock:
            self.ids.extend(ids)
            if len(self.ids) >= self.expect:
                self.all.set()


def test_batch_sizes_and_padding() -> None:
    assert batch_sizes_for(1) == (1,)
    assert batch_sizes_for(6) == (1, 2, 4, 6)
    assert batch_sizes_for(256)[-2:] == (128, 256)
    assert padded_batch(3, (1, 2, 4, 6)) == 4
    assert padded_batch(5, ()) == 5
    with pytest.raises(ValueError, match="larger"):
        padded_batch(7, (1, 2, 4, 6))


def test_pool_takes_full_batches_and_splits_queries() -> None:
    pool = WorkPool(max_batch=4, batching_timeout_ns=0)
    pool.put(list(range(10)), issue_ns=7)
    parts = [pool.take() for _ in range(3)]
    sizes = [sum(len(c) for _, c in p or []) for p in parts]
    assert sizes == [4, 4, 2]
    assert all(t == 7 for p in parts for t, _ in p or [])
    pool.close()
    assert pool.take() is None


def test_pool_waits_for_the_batching_timeout_then_sends_a_partial_batch() -> None:
    pool = WorkPool(max_batch=8, batching_timeout_ns=30_000_000)
    pool.put([1], 1)
    pool.put([2], 2)
    t0 = time.monotonic()
    parts = pool.take()
    waited = time.monotonic() - t0
    assert parts == [(1, [1]), (2, [2])]
    assert 0.02 <= waited < 0.5


def test_pool_sends_a_full_batch_without_waiting() -> None:
    pool = WorkPool(max_batch=2, batching_timeout_ns=5_000_000_000)
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(pool.take()))
    t.start()
    pool.put([1], 1)
    pool.put([2], 2)
    t.join(1.0)
    assert not t.is_alive() and result == [[(1, [1]), (2, [2])]]


def test_pooled_sut_records_every_query_on_each_device() -> None:
    backends = [FakeBackend("gpu0", 0.001), FakeBackend("gpu1", 0.001)]
    rec, done = QueryRecorder(StatusBoard()), Done()
    done.expect = 200
    sut = Sut(
        backends,
        workers_per_device=2,
        recorder=rec,
        complete=done,
        pooled=True,
        batching_timeout_ns=1_000_000,
        max_batch=8,
    )
    for i in range(200):
        sut.issue([i])
    assert done.all.wait(5)
    sut.close()
    assert sut.alive_threads == 0
    r = rec.records()
    assert sorted(done.ids) == list(range(200)) and len(r) == 200 and (r[:, 2] == 1).all()
    assert (r[:, 1] >= r[:, 0]).all()
    assert set(r[:, 3].tolist()) == {0, 1}  # both devices took work
    assert max(max(b.batches) for b in backends) <= 8
    assert rec.status.read() == (0, 200, 200)


def test_offline_query_is_recorded_per_batch() -> None:
    backend = FakeBackend()
    rec, done = QueryRecorder(StatusBoard()), Done()
    done.expect = 100
    sut = Sut(
        [backend],
        workers_per_device=1,
        recorder=rec,
        complete=done,
        pooled=True,
        batching_timeout_ns=0,
        max_batch=32,
    )
    sut.issue(list(range(100)))
    assert done.all.wait(5)
    sut.close()
    r = rec.records()
    assert r[:, 2].tolist() == [32, 32, 32, 4] and len(set(r[:, 0].tolist())) == 1


def test_inline_sut_alternates_devices_and_splits_large_queries() -> None:
    backends = [FakeBackend("gpu0"), FakeBackend("gpu1")]
    rec, done = QueryRecorder(StatusBoard()), Done()
    sut = Sut(
        backends,
        workers_per_device=1,
        recorder=rec,
        complete=done,
        pooled=False,
        batching_timeout_ns=0,
        max_batch=4,
    )
    for q in range(4):
        sut.issue(list(range(8 * q, 8 * q + 8)))
    r = rec.records()
    assert r[:, 3].tolist() == [0, 1, 0, 1] and (r[:, 2] == 8).all()
    assert backends[0].batches == [4, 4, 4, 4]
    assert len(done.ids) == 32


def test_a_failing_backend_still_completes_and_reports() -> None:
    rec, done = QueryRecorder(StatusBoard()), Done()
    sut = Sut(
        [FakeBackend(fail_on=1)],
        workers_per_device=1,
        recorder=rec,
        complete=done,
        pooled=False,
        batching_timeout_ns=0,
        max_batch=1,
    )
    sut.issue([5])
    sut.issue([6])
    assert done.ids == [5, 6]
    assert sut.failure.count == 2 and "boom" in (sut.failure.first or "")


def test_a_failing_completion_is_caught() -> None:
    def bad_complete(ids: Sequence[int]) -> None:
        raise ValueError("lg gone")

    sut = Sut(
        [FakeBackend()],
        workers_per_device=1,
        recorder=QueryRecorder(StatusBoard()),
        complete=bad_complete,
        pooled=False,
        batching_timeout_ns=0,
        max_batch=1,
    )
    sut.issue([1])  # must not raise: LoadGen would crash the process
    assert sut.failure.count == 1 and "lg gone" in (sut.failure.first or "")
    assert len(sut.recorder.records()) == 1  # the query ran and is recorded all the same


def test_abandon_completes_what_is_pending_at_once_without_running_it() -> None:
    backend = FakeBackend(call_s=0.01)
    rec, done = QueryRecorder(StatusBoard()), Done()
    done.expect = 1000
    sut = Sut([backend], workers_per_device=1, recorder=rec, complete=done, pooled=True,
              batching_timeout_ns=0, max_batch=10)  # fmt: skip
    sut.issue(list(range(1000)))
    time.sleep(0.035)  # a few batches run
    abandoned = sut.abandon()
    assert done.all.wait(1)
    sut.close()
    ran = sum(backend.batches)
    assert 10 <= ran <= 100 and abandoned + ran == 1000
    assert sorted(done.ids) == list(range(1000))  # every sample completed exactly once
    r = rec.records()
    assert r[:, 2].sum() == ran  # only what ran is recorded
    assert rec.status.read() == (0, len(r), ran)  # nothing left in flight
    assert sut.abandon() == 0 and sut.pool.take_all() == []


def test_deferred_completion_reports_every_sample_off_the_worker() -> None:
    """Offline: the worker records and moves on; a completer thread tells LoadGen."""
    backend = FakeBackend(call_s=0.001)
    rec, done = QueryRecorder(StatusBoard()), Done()
    done.expect = 500
    threads: set[str] = set()

    def complete(ids: Sequence[int]) -> None:
        threads.add(threading.current_thread().name)
        done(ids)

    sut = Sut([backend], workers_per_device=2, recorder=rec, complete=complete, pooled=True,
              batching_timeout_ns=0, max_batch=16, defer_complete=True)  # fmt: skip
    sut.issue(list(range(500)))
    assert done.all.wait(5)
    sut.close()
    assert threads == {"infergy-completer"}
    assert sorted(done.ids) == list(range(500))  # each exactly once
    assert rec.records()[:, 2].sum() == 500 and sut.alive_threads == 0


def test_deferred_completion_failure_is_caught_and_close_still_joins() -> None:
    def bad_complete(ids: Sequence[int]) -> None:
        raise ValueError("lg gone")

    sut = Sut([FakeBackend()], workers_per_device=1, recorder=QueryRecorder(StatusBoard()),
              complete=bad_complete, pooled=True, batching_timeout_ns=0, max_batch=4,
              defer_complete=True)  # fmt: skip
    sut.issue(list(range(10)))
    deadline = time.monotonic() + 5
    while sut.failure.count < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    sut.close()
    assert sut.failure.count == 3 and "lg gone" in (sut.failure.first or "")
    assert sut.alive_threads == 0
