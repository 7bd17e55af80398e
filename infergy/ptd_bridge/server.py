"""The bridge's TCP side: PTDaemon's line protocol for several clients at once.

Each client gets its own task and its own RL read position; a client that disconnects, or
sends garbage (``Error: unknown command``, the connection stays), changes nothing for the
others or for a running measurement. Like PTDaemon the console echoes reply lines
(``Response to client sent: ...``), at most ``ECHO_BURST`` a second per client (then a count).
The listener binds to 127.0.0.1 unless told otherwise.

One client must not cost another its samples. Each connection's pending work is bounded:
unread requests by the stream's buffer (``MAX_LINE_BYTES``), unread replies by the write
buffer's high-water mark and ``WRITE_TIMEOUT_S`` (a client that does not read its replies is
closed), and its pace by a request budget (``RATE_PER_S``, bursts of ``BURST``): a client
above it waits, and one still above it after ``ABUSE_S`` is closed. Every request yields to
the event loop, so the sampler and the other clients are served between any two of them.

:class:`PtdBridge` puts the analyzer side (:class:`~.bridge.Bridge`) and the listener together
in one async context manager, for the command line, the tests and an in-process ``infergy run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TextIO

from infergy import __version__
from infergy.core.clock import SessionClock
from infergy.errors import AnalyzerError, InputError
from infergy.formats import ptd_protocol as p
from infergy.ptd_bridge.analyzers import Analyzer
from infergy.ptd_bridge.bridge import Bridge, BridgeConfig
from infergy.ptd_bridge.measurement import BAD, Cursor
from infergy.ptd_bridge.outputs import BridgeOutputs

MAX_CLIENTS = 64
MAX_LINE_BYTES = 4096
WRITE_TIMEOUT_S = 10.0
WRITE_HIGH_WATER_BYTES = 64 << 10
"""Unsent reply bytes above which a client's handler waits for it to read (at most
``WRITE_TIMEOUT_S``, then it is closed)."""
RATE_PER_S = 100.0
"""Requests per second a client may send in the long run (MLPerf's client sends a few)."""
BURST = 100
ABUSE_S = 5.0
"""A client above ``RATE_PER_S`` without a pause for this long is closed."""
ECHO_BURST = 20
"""Reply lines echoed on the console per client per second; the rest are counted."""
NOT_PTDAEMON = (
    "This is infergy's PTDaemon-compatible bridge, not SPEC's PTDaemon: measurements taken "
    "through it cannot make an MLPerf-compliant submission."
)


def version_field(today: datetime.date) -> str:
    """The ``version=`` value: ``infergy<version>-<crc32 hex>-<yyyymmdd>`` (PTDaemon's shape)."""
    ver = f"infergy{__version__}"
    return f"{ver}-{zlib.crc32(ver.encode()):08x}-{today:%Y%m%d}"


class BridgeServer:
    """Serves one :class:`~.bridge.Bridge` to TCP clients.

    Args:
        bridge: the analyzer side.
        outputs: the console (echoes) and log.
        max_clients: more concurrent clients are refused with an error line.
    """

    def __init__(
        self,
        bridge: Bridge,
        outputs: BridgeOutputs,
        *,
        max_clients: int = MAX_CLIENTS,
        rate_per_s: float = RATE_PER_S,
        burst: int = BURST,
        abuse_s: float = ABUSE_S,
    ):
        self.bridge = bridge
        self.out = outputs
        self.max_clients = max_clients
        self.rate_per_s, self.burst, self.abuse_s = rate_per_s, burst, abuse_s
        self.closed_abusers = 0
        """Clients closed for flooding or for not reading their replies."""
        self.clients = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        """The client handlers alive (awaited at shutdown: Python 3.11 logs a spurious error
        for a handler cancelled by the loop's own shutdown)."""
        uname = os.uname()
        self._os_name = f"{uname.sysname} {uname.release} {uname.version} {uname.machine}"
        self._version = version_field(datetime.datetime.now(datetime.UTC).date())

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection, until it closes."""
        host, port = writer.get_extra_info("peername")[:2]
        task = asyncio.current_task()
        if task is not None:
            task.set_name(f"ptd-bridge.client[{host}:{port}]")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        self.out.console(f"Accepted connection from {host}:{port}")
        self.clients += 1
        self._writers.add(writer)
        echo = _Echo(f"{host}:{port}")
        closed_why = None
        try:
            writer.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER_BYTES)
            if self.clients > self.max_clients:
                await self._send(writer, ["Error: too many clients"], echo)
                return
            closed_why = await self._requests(reader, writer, echo)
        except TimeoutError:
            closed_why = f"it did not read its replies for {WRITE_TIMEOUT_S:g} s"
        except ConnectionError:
            pass
        finally:
            self.clients -= 1
            self._writers.discard(writer)
            echo.flush(self.out)
            if closed_why is not None:
                self.closed_abusers += 1
                why = f"Closing the connection from {host}:{port}: {closed_why}"
                self.out.status("WARNING", why)
            else:
                self.out.console(f"Connection closed by {host}:{port}")
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError, OSError):
                async with asyncio.timeout(1):
                    await writer.wait_closed()

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, echo: _Echo
    ) -> str | None:
        """Serve requests until the client leaves (None) or abuses its budget (why)."""
        cursor = Cursor()
        budget = RequestBudget(self.rate_per_s, self.burst)
        loop = asyncio.get_running_loop()
        while True:
            try:
                raw = await reader.readline()
            except ValueError:  # longer than MAX_LINE_BYTES: the rest of it is dropped
                await self._send(writer, [p.UNKNOWN_REPLY], echo)
                continue
            if not raw:
                return None
            if not raw.strip():
                continue
            wait_s = budget.take(loop.time(), self.abuse_s)
            if wait_s is None:
                return f"it sent more than {self.rate_per_s:g} requests/s for {self.abuse_s:g} s"
            await asyncio.sleep(wait_s)  # 0 most of the time: the others' turn, too
            lines = await self.reply(raw.decode("ascii", "replace"), cursor)
            await self._send(writer, lines, echo)

    def close_clients(self) -> None:
        """Close every client connection (at shutdown)."""
        for writer in list(self._writers):
            writer.close()

    async def _send(self, writer: asyncio.StreamWriter, lines: list[str], echo: _Echo) -> None:
        writer.write("".join(f"{line}\r\n" for line in lines).encode("ascii", "replace"))
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()
        echo.lines(self.out, lines, time.monotonic())

    async def reply(self, line: str, cursor: Cursor) -> list[str]:  # noqa: PLR0911, PLR0912
        """The reply lines to one request (one case per request, as in PTD.md's table)."""
        b = self.bridge
        req = p.parse_request(line)
        match req:
            case p.Hello():
                return [p.HELLO_REPLY]
            case p.Identify():
                return [self.identify()]
            case p.ReadRanges(all_channels=every, channel=ch):
                return [self._ranges(every, ch)]
            case p.SetRange(quantity=q, value=v, channel=ch):
                if ch is not None and ch not in b.channels:
                    return [p.INVALID_CHANNEL_REPLY]
                try:
                    await b.set_range(q, v)
                except AnalyzerError as err:
                    return [f"Error: {err}"]
                return [p.RANGE_CHANGED_REPLY[q]]
            case p.Go(interval_ms=ms, rampup=ramp, mark=mark):
                error = await b.go(ms, ramp, mark)
                return [error or p.go_reply(ms, ramp)]
            case p.SetMark(mark=mark):
                if b.measurement is None or not b.measurement.running:
                    return ["Error: no measurement running"]
                b.measurement.mark = mark
                return [f"Mark changed to '{mark}'"]
            case p.Stop():
                return [p.STOP_REPLY if b.stop() else p.NO_MEASUREMENT_REPLY]
            case p.ReadSamples():
                return await self._samples(req, cursor)
            case p.Watts():
                m = b.measurement
                return [m.watts_reply() if m else f"Watts,{BAD:.6f},{BAD:.6f},{BAD:.6f},0,0,0"]
            case p.Uncertainty(all_channels=every):
                m = b.measurement
                if m is None:
                    return [f"Uncertainty,{BAD:.6f},{BAD:.6f},{BAD:.6f},0,0,0,0"]
                return [m.uncertainty_reply(all_channels=every and b.multichannel)]
            case p.Latest():
                return [f"Watts,{b.latest.watts if b.latest else BAD:.6f}"]
            case p.Reset():
                b.stats.errors.clear()
                return ["Reset done"]
            case p.Invalid(reply=text):
                return [text]

    def identify(self) -> str:
        """The ``Identify`` reply for the connected analyzer."""
        b = self.bridge
        return p.identify_reply(
            driver=b.driver,
            interval_ms=p.DEFAULT_INTERVAL_MS,
            channels=len(b.channels),
            version=self._version,
            os_name=self._os_name,
            idn=b.idn,
            simulated=b.simulated,
        )

    def _ranges(self, every: bool, channel: int | None) -> str:
        r = self.bridge.ranges

        def flag(x: bool | None) -> int:
            return -1 if x is None else int(x)

        group = p.RangeGroup(flag(r.amps_auto), r.current_range_a or -1.0, flag(r.volts_auto),
                             r.volt_range_v or -1.0)  # fmt: skip
        if channel is not None and channel not in self.bridge.channels:
            return p.INVALID_CHANNEL_REPLY
        if every and self.bridge.multichannel:  # the sum group first, then each channel
            return p.ranges_reply([p.UNKNOWN_RANGES] + [group] * len(self.bridge.channels))
        return p.ranges_reply([group])

    async def _samples(self, req: p.ReadSamples, cursor: Cursor) -> list[str]:
        b = self.bridge
        m = b.measurement
        if req.mode == "all":
            if req.channels and not b.multichannel:
                return [p.INVALID_PARAMETERS_REPLY]
            samples = cursor.take_all(m)
        elif req.mode == "newest":
            if m is not None and m.running and cursor.unread(m) == 0:
                await b.wait_for_sample(b.interval_ms / 1000 + 0.5)
            samples = cursor.take(b.measurement, newest=req.count)
        else:
            samples = cursor.take(m)
        if not samples:
            return [p.NO_UNREAD_REPLY]
        return [p.rl_header(len(samples)), *(s.line for s in samples)]


class RequestBudget:
    """A client's request budget: a token bucket, and how long it has been over it."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s, self.burst = rate_per_s, float(burst)
        self._tokens = float(burst)
        self._t: float | None = None
        self._over_since: float | None = None

    def take(self, now_s: float, abuse_s: float) -> float | None:
        """Seconds to wait before serving the next request; None: over budget for too long."""
        if self._t is not None:
            self._tokens = min(self.burst, self._tokens + (now_s - self._t) * self.rate_per_s)
        self._t = now_s
        self._tokens -= 1.0
        if self._tokens >= 0:
            self._over_since = None
            return 0.0
        if self._over_since is None:
            self._over_since = now_s
        elif now_s - self._over_since > abuse_s:
            return None
        wait_s = -self._tokens / self.rate_per_s
        self._tokens = 0.0
        self._t = now_s + wait_s  # the tokens of the wait are spent by this request
        return wait_s


class _Echo:
    """PTDaemon's reply echo for one client, at most ECHO_BURST lines a second."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self._second = -1
        self._shown = 0
        self._suppressed = 0

    def lines(self, out: BridgeOutputs, lines: list[str], now_s: float) -> None:
        second = int(now_s)
        if second != self._second:
            self.flush(out)
            self._second, self._shown = second, 0
        for line in lines:
            if self._shown < ECHO_BURST:
                self._shown += 1
                out.console(f"Response to client sent: {line}")
            else:
                self._suppressed += 1

    def flush(self, out: BridgeOutputs) -> None:
        if self._suppressed:
            out.console(f"({self._suppressed} more reply lines to {self.peer} not echoed)")
            self._suppressed = 0


class PtdBridge:
    """The whole bridge in-process: analyzer, sampling task and listener.

    Use as ``async with PtdBridge(config, port=0) as bridge: ...`` (``bridge.port`` is the
    port bound). Start-up fails with an :class:`~infergy.errors.AnalyzerError` when the analyzer
    cannot be reached; later losses are survived.

    Args:
        config: the analyzer.
        host: address to listen on (loopback by default).
        port: TCP port (0: any free port).
        console: console stream (default stdout).
        log_path: the ``-l`` data log.
        clock: the clock samples are stamped with.
        opener: replaces :func:`~.analyzers.open_analyzer` (tests).
    """

    def __init__(
        self,
        config: BridgeConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 8888,
        console: TextIO | None = None,
        log_path: Path | None = None,
        clock: SessionClock | None = None,
        opener: Callable[[], Analyzer] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.clock = clock or SessionClock()
        self.outputs = BridgeOutputs(self.clock, console or sys.stdout, log_path)
        self.outputs.banner(f"infergy ptd-bridge {__version__}. {NOT_PTDAEMON}")
        if log_path is not None:
            self.outputs.banner(f"Redirecting data output to file {log_path}")
        self.bridge = Bridge(config, self.outputs, self.clock, opener=opener)
        self.server = BridgeServer(self.bridge, self.outputs)
        self._listener: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> PtdBridge:
        try:
            await self.bridge.start()
            try:
                self._listener = await asyncio.start_server(
                    self.server.handle, self.host, self.port, limit=MAX_LINE_BYTES
                )
            except OSError as err:
                msg = f"cannot listen on {self.host}:{self.port}: {err.strerror or err}"
                hint = "is another PTDaemon or bridge using that port? choose another with -p"
                raise InputError(msg, hint=hint) from None
        except BaseException:
            await self.bridge.close()
            self.outputs.close()
            raise
        self.port = self._listener.sockets[0].getsockname()[1]
        self.outputs.console(f"Establishing the listener on port {self.port}...")
        self.outputs.console("Waiting for a connection...")
        self._tasks = [asyncio.create_task(self.bridge.run(), name="ptd-bridge.sampler")]
        return self

    async def serve_forever(self) -> None:
        """Serve until cancelled (the command line's main loop)."""
        await asyncio.gather(*self._tasks)

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
            self.server.close_clients()
            if self.server.tasks:  # closed writers end them: let them finish on their own
                await asyncio.wait(set(self.server.tasks), timeout=2)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._listener.wait_closed()
        await self.bridge.close()
        self.outputs.close()
