"""The ``ptd`` meter's side of the PTD protocol: a connection, its verbs, sample lines.

:class:`PtdConnection` serialises line exchanges on one TCP connection and stamps each on the
session clock when the request was sent and when the reply (its first line) arrived: the raw
material of the clock-offset estimate (:func:`bracket`). Socket errors, EOF and timeouts
become :class:`~infergy.errors.AnalyzerConnectionError`; the caller reconnects.
:func:`parse_samples` turns ``RL`` lines into values with their uncertainty.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass

from infergy.core.accuracy import Accuracy
from infergy.core.clock import SessionClock
from infergy.errors import (
    AnalyzerConnectionError,
    AnalyzerProtocolError,
    AnalyzerRangeError,
    AnalyzerTimeoutError,
)
from infergy.formats import ptd_protocol as p
from infergy.formats.ptd import INVALID_ABOVE, parse_ptd_log

MAX_REPLY_LINES = 1_000_000
HALF_MS_NS = 500_000
"""PTD timestamps are floored to the millisecond: the true stamp is on average 0.5 ms later."""


@dataclass(frozen=True)
class RemoteSample:
    """One sample line as the meter keeps it.

    Attributes:
        remote_ns: its time on the server's clock, +0.5 ms (PTD floors to the millisecond).
        watts: the (summed) power, NaN for a bad, missed or implausible sample.
        uncertainty: relative uncertainty of ``watts`` (NaN: unknown).
        channels: (``Ch<n>`` label, watts or NaN, uncertainty) per channel of a multichannel
            line; empty for a single-channel line.
        max_volts: largest valid channel voltage (0 if none).
        max_amps: largest valid channel current (0 if none).
    """

    remote_ns: int
    watts: float
    uncertainty: float
    channels: tuple[tuple[str, float, float], ...]
    max_volts: float
    max_amps: float


def parse_samples(
    lines: tuple[str, ...], ranges: p.RangeGroup, accuracy: Accuracy | None
) -> list[RemoteSample]:
    """RL sample lines -> samples, each with its uncertainty from the ranges in use.

    A multichannel line's ``Ch<n>`` groups are used and their sum recomputed; any invalid
    channel makes the sum invalid. Sentinels (-1, -2), NaN/INF codes and W <= 0 are invalid.
    """
    if not lines:
        return []
    log = parse_ptd_log("\n".join(lines))
    groups = [(name, ch) for name, ch in log.channels.items()] or [("", log)]
    out = []
    for i in range(len(log)):
        total_w, err_w, ok, max_v, max_a = 0.0, 0.0, True, 0.0, 0.0
        chans = []
        for name, g in groups:
            w, v, a, pf = (float(x[i]) for x in (g.watts, g.volts, g.amps, g.pf))
            valid = all(math.isfinite(x) for x in (w, v, a, pf)) and 0 < w < INVALID_ABOVE
            valid = valid and v > 0 and a > 0
            u = math.nan
            if valid and accuracy is not None:
                u = accuracy.uncertainty(w, ranges.volts_range_v, ranges.amps_range_a, pf)
            if valid:
                max_v, max_a = max(max_v, v), max(max_a, a)
            ok, total_w, err_w = ok and valid, total_w + w, err_w + u * w
            if name:
                chans.append((name, w if valid else math.nan, u))
        watts = total_w if ok else math.nan
        u_total = err_w / total_w if ok else math.nan
        remote = int(log.t_ns[i]) + HALF_MS_NS
        out.append(RemoteSample(remote, watts, u_total, tuple(chans), max_v, max_a))
    return out


def bracket(drain: Exchange, quick: Exchange, rl1: Exchange) -> tuple[int, int]:
    """The host-time interval in which the sample returned by ``rl1`` was stamped.

    ``drain`` (``RL``) read everything before; ``quick`` (``R*``) measured a round trip that
    does not wait. If ``rl1`` (``RL,1``) waited for the sample, the server stamped it less than
    one quick round trip before the reply arrived; if it did not wait, the sample was stamped
    after the drain was sent.
    """
    q_ns = quick.recv_ns - quick.send_ns
    waited = rl1.recv_ns - rl1.send_ns > 2 * q_ns + 1_000_000
    lower = max(rl1.send_ns, rl1.recv_ns - q_ns) if waited else drain.send_ns
    return lower, rl1.recv_ns


@dataclass(frozen=True)
class Exchange:
    """One request and its reply.

    Attributes:
        request: the line sent.
        reply: the reply's first line (CR LF stripped).
        lines: the sample lines that followed an ``RL`` header.
        send_ns: session time just before the request was written.
        recv_ns: session time when the reply's first line was complete.
    """

    request: str
    reply: str
    lines: tuple[str, ...]
    send_ns: int
    recv_ns: int


class PtdConnection:
    """One open connection; use :meth:`open`.

    Args:
        reader: the stream's reader.
        writer: the stream's writer.
        clock: stamps exchanges.
        where: ``host:port`` for messages.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        clock: SessionClock,
        where: str,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._clock = clock
        self.where = where
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        clock: SessionClock,
        timeout_s: float = 30.0,
        retry_interval_s: float = 0.1,
    ) -> PtdConnection:
        """Connect, retrying every ``retry_interval_s`` for up to ``timeout_s``.

        A real PTDaemon can take 17 s to open a WT333E over USB before it listens
        (power-dev issue 132), hence the generous default.

        Raises:
            AnalyzerConnectionError: nothing accepted the connection in time.
        """
        where = f"{host}:{port}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                async with asyncio.timeout(max(0.1, min(5.0, deadline - loop.time()))):
                    reader, writer = await asyncio.open_connection(host, port)
                return cls(reader, writer, clock, where)
            except (OSError, TimeoutError) as err:
                if loop.time() + retry_interval_s > deadline:
                    msg = f"cannot connect to the PTD server at {where}: {err}"
                    hint = "is PTDaemon (or `infergy ptd-bridge`) running and listening there?"
                    raise AnalyzerConnectionError(msg, hint=hint) from err
            await asyncio.sleep(retry_interval_s)

    async def exchange(self, request: str, *, timeout_s: float = 10.0) -> Exchange:
        """Send one request; read its reply line, and the sample lines after an RL header.

        Raises:
            AnalyzerConnectionError: the connection failed or timed out.
            AnalyzerProtocolError: an RL header announced an absurd number of lines.
        """
        async with self._lock:
            send_ns = self._clock.now_ns()
            try:
                async with asyncio.timeout(timeout_s):
                    self._writer.write(request.encode("ascii") + b"\r\n")
                    await self._writer.drain()
                    reply = await self._line()
                    recv_ns = self._clock.now_ns()
                    lines: list[str] = []
                    if request.upper().startswith(("RL", "DC-RL")):
                        n = p.parse_rl_header(reply) or 0
                        if n > MAX_REPLY_LINES:
                            msg = f"{self.where} announced {n} sample lines"
                            raise AnalyzerProtocolError(msg)
                        lines = [await self._line() for _ in range(n)]
            except TimeoutError:
                msg = f"no reply to {request!r} from {self.where} within {timeout_s:g} s"
                raise AnalyzerTimeoutError(msg) from None
            except (OSError, asyncio.IncompleteReadError, ValueError) as err:
                msg = f"the connection to {self.where} failed: {err or type(err).__name__}"
                raise AnalyzerConnectionError(msg) from err
        return Exchange(request, reply, tuple(lines), send_ns, recv_ns)

    async def request(self, request: str) -> str:
        """One request's reply line."""
        return (await self.exchange(request)).reply

    async def handshake(self) -> p.Identity:
        """``Hello`` (checked) and ``Identify`` (parsed).

        Raises:
            AnalyzerProtocolError: not a PTD server, or an Identify that does not parse.
        """
        hello = await self.request("Hello")
        if hello != p.HELLO_REPLY:
            msg = f"{self.where} is not a PTD server: it answered {hello[:80]!r} to Hello"
            raise AnalyzerProtocolError(msg, hint="check the host and port")
        return p.parse_identify(await self.request("Identify"))

    async def read_ranges(self) -> p.RangeGroup:
        """``RR``: the (first channel's) range settings."""
        groups = p.parse_ranges(await self.request("RR"))
        return groups[-1] if len(groups) > 1 else groups[0]

    async def go(self, interval_ms: int, mark: str) -> None:
        """``Go,<ms>,0,<mark>``; a measurement already running is fine (after a reconnect)."""
        reply = await self.request(f"Go,{interval_ms},0,{mark}")
        if not reply.startswith("Starting untimed measurement") and "already" not in reply:
            msg = f"the PTD server refused to start a measurement: {reply}"
            raise AnalyzerProtocolError(msg)

    async def stop(self) -> None:
        """``Stop``; no measurement running is fine."""
        reply = await self.request("Stop")
        if reply not in (p.STOP_REPLY, p.NO_MEASUREMENT_REPLY):
            msg = f"unexpected reply to Stop: {reply}"
            raise AnalyzerProtocolError(msg)

    async def set_range(self, quantity: str, value: float | None) -> None:
        """``SR,V|A,<value>|Auto``.

        Raises:
            AnalyzerRangeError: the server refused it.
        """
        arg = "Auto" if value is None else f"{value:.6f}"
        reply = await self.request(f"SR,{quantity},{arg}")
        if reply != p.RANGE_CHANGED_REPLY.get(quantity):
            msg = f"the PTD server refused SR,{quantity},{arg}: {reply}"
            raise AnalyzerRangeError(msg)

    async def _line(self) -> str:
        raw = await self._reader.readuntil(b"\n")
        return raw.decode("ascii", "replace").rstrip("\r\n")

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1):
                await self._writer.wait_closed()
