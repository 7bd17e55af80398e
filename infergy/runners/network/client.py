"""The HTTP side of the network SUT: one event loop thread, one pooled aiohttp session.

LoadGen calls the SUT from its own threads; the requests run on an asyncio loop in a thread
of its own (:class:`LoopThread`), through one :class:`aiohttp.ClientSession` whose connector
holds at most ``concurrency`` connections and keeps them alive between requests. Every request
has a total timeout. Failures are sorted once, here, into what they mean for the run
(:class:`~infergy.errors.ServerRequestError`): ``lost`` (refused, reset, timed out: the
server may be gone) or not (the server answered with an error).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp

from infergy.errors import ServerRequestError, WorkloadFailedError

T = TypeVar("T")

CONNECT_TIMEOUT_S = 10.0


def request_failed(err: BaseException, what: str, timeout_s: float) -> ServerRequestError:
    """The meaning of an aiohttp or timeout error raised by one request."""
    if isinstance(err, ServerRequestError):
        return err
    lost, why = True, f"{type(err).__name__}: {err}"
    if isinstance(err, TimeoutError | asyncio.TimeoutError):
        why = f"no answer within {timeout_s:g} s"
    elif isinstance(err, aiohttp.ClientResponseError):
        lost, why = False, f"HTTP {err.status} {err.message}"
    elif isinstance(err, aiohttp.ClientConnectorError):
        why = f"cannot connect: {err.os_error or err}"
    elif isinstance(err, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        why = "the server closed the connection"
    elif not isinstance(err, aiohttp.ClientError | OSError):
        lost = False
    return ServerRequestError(f"{what}: {why}", lost=lost)


async def error_reply(resp: aiohttp.ClientResponse, what: str) -> ServerRequestError:
    """A non-2xx reply as a failure, with the server's own message when it gives one."""
    detail = ""
    try:
        body = (await resp.read())[:500].decode("utf-8", errors="replace")
        detail = f": {body.strip()}" if body.strip() else ""
    except (aiohttp.ClientError, TimeoutError):
        pass
    return ServerRequestError(f"{what}: HTTP {resp.status} {resp.reason}{detail}", lost=False)


class LoopThread:
    """An asyncio loop on a daemon thread with one shared :class:`aiohttp.ClientSession`.

    Args:
        name: the thread's name.
        concurrency: connections kept at most (and so requests in flight at most).
        timeout_s: each request's total timeout.
    """

    def __init__(self, name: str, *, concurrency: int, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self.session: aiohttp.ClientSession = self.run(self._open(), CONNECT_TIMEOUT_S)

    async def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.concurrency, limit_per_host=self.concurrency, keepalive_timeout=60
        )
        timeout = aiohttp.ClientTimeout(  # sock_read: a stream that stalls mid-way times out too
            total=self.timeout_s, connect=min(CONNECT_TIMEOUT_S, self.timeout_s),
            sock_read=self.timeout_s,
        )  # fmt: skip
        return aiohttp.ClientSession(connector=connector, timeout=timeout, raise_for_status=False)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        """Run ``coro`` on the loop and wait for it from this (another) thread.

        Raises:
            WorkloadFailedError: it did not finish within ``timeout_s``.
        """
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            msg = f"the server did not answer within {timeout_s:g} s"
            raise WorkloadFailedError(msg) from None

    def close(self) -> None:
        """Close the session and stop the loop (idempotent)."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(WorkloadFailedError, RuntimeError):
            self.run(self.session.close(), 5.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self.loop.close()
