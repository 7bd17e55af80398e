"""The network SUT: LoadGen's queries sent to a running server, at most ``concurrency`` at once.

LoadGen calls :meth:`NetworkSut.issue` on its own thread; the samples are handed to the
backend's event loop (:class:`~infergy.runners.network.client.LoopThread`), queued, and sent as
requests while fewer than ``concurrency`` are in flight: a KServe request carries up to
``max_batch`` samples (whatever is pending, never waiting for more: the server batches), an
OpenAI request one sample, streamed. Every completed request is recorded like the in-process
SUT's queries (issue and completion ``time.monotonic_ns()``, samples) and reported to LoadGen;
a streamed sample calls ``FirstTokenComplete`` at its first token and completes with its token
count, so LoadGen computes TTFT and TPOT.

A failed request is not recorded (the run's figures cover what completed) but its samples are
still reported to LoadGen, which must never wait for them; the first error and the count are
kept (:class:`~infergy.runners.sut.Failure`), and the run is ``degraded``. After
:data:`LOST_IN_A_ROW` requests in a row got no answer (refused, reset, timed out), the server
is taken as gone: everything pending and everything LoadGen issues later is reported at once
without being sent, so an Offline run ends at once and a Server run at the end of its schedule.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from infergy.errors import ServerRequestError
from infergy.runners.lg_calls import LoadgenCalls
from infergy.runners.network.openai import Generation
from infergy.runners.recorder import QueryRecorder
from infergy.runners.sut import Failure

LOST_IN_A_ROW = 8
"""Requests in a row without an answer after which the server is taken as gone."""
CLOSE_TIMEOUT_S = 5.0


class Server(Protocol):
    """What the SUT needs of its backend (:class:`.backend.NetworkBackend` has it)."""

    @property
    def streams_tokens(self) -> bool:
        """OpenAI: one streamed sample per request, with token latencies."""
        ...

    @property
    def max_batch(self) -> int | None:
        """The most samples one request takes (None: any)."""
        ...

    @property
    def concurrency(self) -> int:
        """Requests in flight at most."""
        ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the requests run on."""
        ...

    async def send(self, n: int) -> None:
        """One request of ``n`` samples (raises ServerRequestError)."""
        ...

    async def generate(self, index: int, on_first_token: Callable[[], None] | None) -> Generation:
        """One streamed sample (raises ServerRequestError)."""
        ...


@dataclass
class _Segment:
    issue_ns: int
    ids: list[int]
    indices: list[int]
    pos: int = 0


class NetworkSut:
    """LoadGen's SUT for a running server; see the module docstring.

    Args:
        backend: the loaded network backend (its loop, session and protocol).
        recorder: where every completed request goes.
        calls: LoadGen's completion calls.
        max_batch: the most samples one KServe request carries.
    """

    def __init__(
        self,
        backend: Server,
        *,
        recorder: QueryRecorder,
        calls: LoadgenCalls,
        max_batch: int,
    ) -> None:
        self.backend = backend
        self.recorder = recorder
        self.calls = calls
        self.streams = backend.streams_tokens
        self.max_batch = (
            1 if self.streams else max(1, min(max_batch, backend.max_batch or max_batch))
        )
        self.concurrency = backend.concurrency
        self.failure = Failure()
        self._loop = backend.loop
        self._pending: collections.deque[_Segment] = collections.deque()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._no_answer_in_a_row = 0
        self.lost: str | None = None
        """Why the server was taken as gone (None: it was not)."""
        self.requests = 0
        self.samples_not_sent = 0
        self.tokens = 0
        self.short_streams = 0
        """Streamed samples with fewer than 2 tokens (LoadGen's TPOT is undefined for them)."""
        self.answered = 0

    # -- LoadGen's thread (never raises) ------------------------------------------------------

    def issue(self, ids: Sequence[int], indices: Sequence[int]) -> None:
        """``issue_queries`` (``ConstructFastSUT``): one query's sample ids and indices."""
        issue_ns = time.monotonic_ns()
        try:
            self.recorder.issued(len(ids))
            if self.lost is not None:
                self._drop(ids)
                return
            self._loop.call_soon_threadsafe(self._arrive, issue_ns, list(ids), list(indices))
        except BaseException as err:
            self.failure.add("issue", err)
            self._drop(ids)

    def flush(self) -> None:
        """``flush_queries``: nothing is held back."""

    def abandon(self) -> int:
        """Report every pending sample done without sending it (the warm-up's cut-off)."""
        future = asyncio.run_coroutine_threadsafe(self._abandon(), self._loop)
        try:
            return future.result(CLOSE_TIMEOUT_S)
        except TimeoutError:
            return 0

    def close(self) -> None:
        """Wait (bounded) for requests in flight, then cancel what is left."""
        future = asyncio.run_coroutine_threadsafe(self._drain(), self._loop)
        try:
            future.result(CLOSE_TIMEOUT_S + 1.0)
        except TimeoutError:
            future.cancel()

    # -- the loop's thread --------------------------------------------------------------------

    def _arrive(self, issue_ns: int, ids: list[int], indices: list[int]) -> None:
        if self.lost is not None:
            self._drop(ids)
            return
        self._pending.append(_Segment(issue_ns, ids, indices))
        self._dispatch()

    def _dispatch(self) -> None:
        while self._pending and self._in_flight < self.concurrency:
            if self.lost is not None:
                self._drop_pending()
                return
            parts = self._take()
            self._in_flight += 1
            task = self._loop.create_task(self._send(parts), name="infergy-net-request")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_Segment]:
        """Up to ``max_batch`` pending samples, oldest first, as per-query parts."""
        parts: list[_Segment] = []
        room = self.max_batch
        while room and self._pending:
            seg = self._pending[0]
            k = min(room, len(seg.ids) - seg.pos)
            sl = slice(seg.pos, seg.pos + k)
            parts.append(_Segment(seg.issue_ns, seg.ids[sl], seg.indices[sl]))
            seg.pos += k
            room -= k
            if seg.pos == len(seg.ids):
                self._pending.popleft()
        return parts

    async def _send(self, parts: list[_Segment]) -> None:
        ids = [i for p in parts for i in p.ids]
        self.requests += 1
        try:
            if self.streams:
                sample_id, index = parts[0].ids[0], parts[0].indices[0]
                gen = await self.backend.generate(index, lambda: self.calls.first_token(sample_id))
                done_ns = time.monotonic_ns()
                self.tokens += gen.tokens
                self.short_streams += gen.tokens < 2
                self.recorder.completed(parts[0].issue_ns, done_ns, 1, 0)
                self._tell(lambda: self.calls.complete_tokens(sample_id, gen.tokens))
            else:
                await self.backend.send(len(ids))
                done_ns = time.monotonic_ns()
                for p in parts:
                    self.recorder.completed(p.issue_ns, done_ns, len(p.ids), 0)
                self._tell(lambda: self.calls.complete(ids))
            self.answered += 1
            self._no_answer_in_a_row = 0
        except ServerRequestError as err:
            self._failed(ids, err)
        except Exception as err:  # never lose samples: LoadGen would wait for them forever
            self._failed(ids, ServerRequestError(f"{type(err).__name__}: {err}", lost=False))
        finally:
            self._in_flight -= 1
            self._dispatch()

    def _failed(self, ids: list[int], err: ServerRequestError) -> None:
        self.failure.add("request", err)
        self._drop(ids, sent=True)
        if err.lost:
            self._no_answer_in_a_row += 1
            if self._no_answer_in_a_row >= LOST_IN_A_ROW and self.lost is None:
                self.lost = (
                    f"the server stopped answering ({LOST_IN_A_ROW} requests in a row failed "
                    f"after {self.answered} answered; last: {err})"
                )
                self._drop_pending()

    def _drop_pending(self) -> None:
        while self._pending:
            seg = self._pending.popleft()
            self._drop(seg.ids[seg.pos :])

    def _drop(self, ids: Sequence[int], *, sent: bool = False) -> None:
        """Samples that will not complete: no record, but LoadGen is told they are done."""
        if not ids:
            return
        if not sent:
            self.samples_not_sent += len(ids)
        self.recorder.abandoned(len(ids))
        self._tell(lambda: self.calls.complete(ids))

    def _tell(self, call: Callable[[], None]) -> None:
        try:
            call()
        except BaseException as err:
            self.failure.add("complete", err)

    async def _abandon(self) -> int:
        n = sum(len(seg.ids) - seg.pos for seg in self._pending)
        while self._pending:
            seg = self._pending.popleft()
            rest = seg.ids[seg.pos :]
            self.recorder.abandoned(len(rest))
            self._tell(lambda rest=rest: self.calls.complete(rest))  # type: ignore[misc]
        return n

    async def _drain(self) -> None:
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=CLOSE_TIMEOUT_S)
            for task in pending:
                task.cancel()

    # -- after the run ------------------------------------------------------------------------

    def notes(self) -> list[str]:
        """What the run's result should say about the server, one line each."""
        out = []
        if self.lost is not None:
            out.append(self.lost)
        if self.samples_not_sent:
            out.append(f"{self.samples_not_sent} samples were not sent (the server was gone)")
        if self.short_streams:
            out.append(
                f"{self.short_streams} streamed samples had fewer than 2 tokens: LoadGen's "
                "time per output token is undefined for them"
            )
        return out

    def stats(self) -> dict[str, Any]:
        """Counts for the result (requests, failures, tokens)."""
        return {
            "requests": self.requests, "answered": self.answered,
            "failed": self.failure.count, "samples_not_sent": self.samples_not_sent,
            "tokens": self.tokens if self.streams else None, "server_lost": self.lost is not None,
            "concurrency": self.concurrency, "max_batch": self.max_batch,
        }  # fmt: skip
