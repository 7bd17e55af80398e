"""infergy's ``ptd`` meter: wall (AC) power from a PTDaemon or infergy's PTD bridge over TCP.

The meter connects (retrying: a real PTDaemon can take 17 s to come up), checks ``Hello`` and
``Identify``, reads the initial ranges (``RR``), starts an untimed measurement and polls ``RL``
for the samples it has not read. Each sample becomes one ``interval_mean`` value of the source
(``ac`` by default; ``ac1``... per channel of a multichannel analyzer), with its relative
uncertainty computed from the reading, the ranges in use and the analyzer's accuracy table
(:mod:`infergy.ptd_bridge.analyzers.specs`). Bad (-1) and missed (-2) samples are kept as NaN:
gaps, never zeros; ``INVALID_DOWN`` of them in a row mark the source down until a reading.

MLPerf's two passes are methods a session calls: :meth:`PtdMeter.ranging` (autorange,
``<mark>_ranging``), :meth:`PtdMeter.testing` (voltage range at the largest volts seen,
current range at 1.1x the largest amps seen, ``<mark>_testing``) and :meth:`PtdMeter.stop`
(which restores the ranges found at connection, as power-dev does); they live in
:mod:`infergy.meters.ptd_passes`, a mixin, and the meter keeps the largest volts and amps seen.

Clock offset (PTD has no time command). Each estimate is one exchange: drain with ``RL``, time
a non-waiting ``R*`` (round trip ``q``), then send ``RL,1``, which waits for the next sample
when none is unread. A server answers that as soon as it stamps the sample, so the sample's
time ``T`` (+0.5 ms: PTD floors to the millisecond) was taken in ``[recv - q, recv]`` when the
``RL,1`` waited, or in ``[send of the drain, recv]`` when a sample was already there. The offset
is the median of :func:`~infergy.core.clock.offset_by_bracketing` over five exchanges; its error
is half the median bracket (a fraction of a millisecond on one host) plus the server's delay
between stamping and answering, and samples whose time is not new are not used.

After a drop the meter reconnects with capped, jittered backoff and re-sends ``Go`` (a bridge
that kept measuring answers that one is running and resends everything the meter missed: no
gap). Disconnected stretches are recorded in :attr:`PtdMeter.connection_gaps`; samples are
never invented, so coverage shows whatever was really lost.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from infergy.core.accuracy import Accuracy, accuracy_for_driver
from infergy.core.backoff import Backoff
from infergy.core.clock import MIN_EXCHANGES, OffsetEstimate, SessionClock, offset_by_bracketing
from infergy.core.trace import Semantics, Trace
from infergy.errors import AnalyzerConnectionError, AnalyzerProtocolError, MeterError
from infergy.formats import ptd_protocol as p
from infergy.meters.base import DEFAULT_CAPACITY, MeterHealth, RingBuffer, SourceInfo
from infergy.meters.ptd_client import HALF_MS_NS, Exchange, PtdConnection, bracket, parse_samples
from infergy.meters.ptd_passes import MlperfPasses

_NO_OFFSET = OffsetEstimate(0, 0, "none", accepted=False, reason="not estimated yet")
INVALID_DOWN = 3
"""After this many bad or missed samples in a row a source is down (up again at a reading)."""


class PtdMeter(MlperfPasses):
    """Wall power from a PTD server; implements :class:`~infergy.meters.base.Meter`.

    Args:
        clock: the session clock.
        host: the PTD server (infergy's bridge or SPEC's PTDaemon).
        port: its TCP port (PTDaemon's default 8888).
        source: the source name (``ac``).
        interval_ms: sample interval asked with ``Go``.
        mark: mark prefix for ``Go`` (``<mark>``, ``<mark>_ranging``, ``<mark>_testing``).
        autostart: start a measurement as soon as connected (else wait for :meth:`ranging`).
        connect_timeout_s: how long the first connection may take.
        poll_interval_s: time between ``RL`` polls (default a quarter interval, 50 ms-1 s).
        request_timeout_s: longest wait for a reply.
        offset_exchanges: exchanges in the clock-offset estimate (at least 5; 0: assume none).
        backoff_max_s: longest wait between reconnection attempts.
        capacity: samples kept.
        simulated: the caller knows the analyzer is simulated (an emulator it started); a
            server that says so in its ``Identify`` reply makes the sources simulated too.
    """

    name = "ptd"

    def __init__(
        self,
        *,
        clock: SessionClock,
        host: str = "127.0.0.1",
        port: int = 8888,
        source: str = "ac",
        interval_ms: int = 1000,
        mark: str = "infergy",
        autostart: bool = True,
        connect_timeout_s: float = 30.0,
        poll_interval_s: float | None = None,
        request_timeout_s: float = 10.0,
        offset_exchanges: int = 5,
        backoff_max_s: float = 5.0,
        capacity: int = DEFAULT_CAPACITY,
        simulated: bool = False,
    ) -> None:
        self._clock = clock
        self._simulated = simulated
        self.host, self.port, self.source = host, port, source
        self.interval_ms = interval_ms
        self.mark = mark
        self.autostart = autostart
        self.connect_timeout_s = connect_timeout_s
        self.poll_interval_s = poll_interval_s or min(1.0, max(0.05, interval_ms / 4000))
        self.request_timeout_s = request_timeout_s
        self.offset_exchanges = max(offset_exchanges, MIN_EXCHANGES) if offset_exchanges else 0
        self.backoff_max_s = backoff_max_s
        self._capacity = capacity
        self._buffers: dict[str, RingBuffer] = {source: RingBuffer(capacity, with_uncertainty=True)}
        self._health: dict[str, MeterHealth] = {source: MeterHealth()}
        self._invalid_run: dict[str, int] = {}  # consecutive invalid samples per source
        self._conn: PtdConnection | None = None
        self._connected = asyncio.Event()
        self.identity: p.Identity | None = None
        self.initial_ranges: p.RangeGroup | None = None
        self._ranges: p.RangeGroup = p.UNKNOWN_RANGES
        self._accuracy: Accuracy | None = None
        self.clock_offset = _NO_OFFSET
        self._offset_samples: list[tuple[int, int, int]] = []
        self._last_remote_ns = -1
        self.phase: str | None = None
        self._ranging_max = [0.0, 0.0]  # volts, amps
        self.testing_ranges: tuple[float, float] | None = None
        self.connection_gaps: list[tuple[int, int]] = []
        self.summaries: dict[str, str] = {}
        """The server's last ``Watts`` and ``Uncertainty`` replies (after :meth:`stop`)."""

    # -- the Meter protocol ---------------------------------------------------------------------

    @property
    def simulated(self) -> bool:
        """Whether the readings are not measurements (known at construction or from Identify)."""
        return self._simulated or (self.identity is not None and self.identity.simulated)

    def describe(self) -> list[SourceInfo]:
        """The summed source and, once seen, one per channel of a multichannel analyzer."""
        ident = self.identity
        device = f"PTD at {self.host}:{self.port}"
        details = {"host": self.host, "port": str(self.port)}
        if ident is not None:
            device = f"{ident.driver} ({ident.idn}) via PTD at {self.host}:{self.port}"
            details |= {"driver": ident.driver, "version": ident.version, "idn": ident.idn}
        simulated = self.simulated
        if simulated:
            device = f"SIMULATED {device}"
            details["simulated"] = "true"
        period = self.interval_ms * 1_000_000
        return [SourceInfo(name, "analyzer", device, Semantics.INTERVAL_MEAN, period, "W",
                           simulated=simulated, details=details)
                for name in self._buffers]  # fmt: skip

    def snapshot(
        self, source: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> Trace:
        """The samples of ``source`` on the host clock (the clock offset applied)."""
        buffer, off = self._source(source)
        trace = buffer.trace(
            Semantics.INTERVAL_MEAN,
            self.interval_ms * 1_000_000,
            None if start_ns is None else start_ns + off,
            None if end_ns is None else end_ns + off,
        )
        return trace.shifted(off)

    def samples_after(
        self, source: str, after_ns: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """(t_ns, watts) with host-clock ``t_ns > after_ns``, on the host clock like snapshot."""
        buffer, off = self._source(source)
        t, v = buffer.after(after_ns + off)  # the buffer holds analyzer-clock times
        return t - np.int64(off), v

    def _source(self, source: str) -> tuple[RingBuffer, int]:
        """Its buffer and the offset: analyzer clock - host clock (0 until one is accepted)."""
        buffer = self._buffers.get(source)
        if buffer is None:
            msg = f"the ptd meter has no source {source!r} (it has: {', '.join(self._buffers)})"
            raise MeterError(msg)
        return buffer, self.clock_offset.offset_ns if self.clock_offset.accepted else 0

    def health(self) -> Mapping[str, MeterHealth]:
        """Health per source."""
        for name, h in self._health.items():
            h.dropped = self._buffers[name].dropped
        return self._health

    async def run(self) -> None:
        """Connect, measure and poll until cancelled; reconnect after any drop.

        Raises:
            AnalyzerConnectionError: the first connection failed (within ``connect_timeout_s``).
            AnalyzerProtocolError: the first server reached is not a PTD server.
        """
        first = True
        backoff = Backoff(0.1, self.backoff_max_s)
        lost_at: int | None = None
        try:
            while True:
                try:
                    await self._connect(first)
                    if lost_at is not None:
                        self.connection_gaps.append((lost_at, self._clock.now_ns()))
                        lost_at = None
                    first = False
                    backoff.reset()
                    await self._poll_forever()
                except (AnalyzerConnectionError, AnalyzerProtocolError) as err:
                    if first:  # misconfigured or absent: the session should know at once
                        raise
                    self._mark_down("connection", str(err))
                    lost_at = lost_at or self._clock.now_ns()
                    await self._disconnect()
                    await asyncio.sleep(backoff.next_delay_s())
        finally:
            await self._disconnect()

    # -- connection -----------------------------------------------------------------------------

    async def _connect(self, first: bool) -> None:
        timeout = self.connect_timeout_s if first else self.request_timeout_s
        conn = await PtdConnection.open(self.host, self.port, clock=self._clock, timeout_s=timeout)
        self._conn = conn
        self.identity = await conn.handshake()
        self._accuracy = accuracy_for_driver(self.identity.driver)
        self._ranges = await conn.read_ranges()
        if first:
            self.initial_ranges = self._ranges
            self.phase = "run" if self.autostart and self.phase is None else self.phase
        if self.phase is not None:
            await self._go()
        self._connected.set()
        for h in self._health.values():
            h.up = True

    async def check_reachable(self, timeout_s: float = 3.0) -> None:
        """Fail now, naming host and port, when nothing accepts a connection there.

        A session calls this before its idle baseline: a refused connection is then reported
        in about ``timeout_s`` instead of after the meter's own first-connection patience.

        Raises:
            AnalyzerConnectionError: nothing accepted the connection within ``timeout_s``.
        """
        conn = await PtdConnection.open(
            self.host, self.port, clock=self._clock, timeout_s=timeout_s
        )
        await conn.close()

    @property
    def connected(self) -> bool:
        """Whether the meter holds a working connection to the PTD server now."""
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        """Wait until the meter is connected (for sessions that start it and go on)."""
        async with asyncio.timeout(timeout_s or self.connect_timeout_s + 5):
            await self._connected.wait()

    async def _disconnect(self) -> None:
        self._connected.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    def _mark_down(self, kind: str, message: str) -> None:
        for h in self._health.values():
            h.up = False
            h.error(kind, message)

    def _session(self) -> PtdConnection:
        if self._conn is None:
            msg = f"not connected to the PTD server at {self.host}:{self.port}"
            raise AnalyzerConnectionError(msg)
        return self._conn

    async def _exchange(self, request: str, timeout_s: float | None = None) -> Exchange:
        conn = self._session()
        return await conn.exchange(request, timeout_s=timeout_s or self.request_timeout_s)

    async def _go(self) -> None:
        mark = self.mark if self.phase == "run" else f"{self.mark}_{self.phase}"
        await self._session().go(self.interval_ms, mark)

    # -- samples --------------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            if self._needs_offset():
                await self._offset_exchange()
            else:
                await self.poll()
                await asyncio.sleep(self.poll_interval_s)

    async def poll(self) -> int:
        """Read the unread samples now (``RL``); returns how many were new."""
        if self._ranges.amps_auto == 1 or self._ranges.volts_auto == 1:
            self._ranges = await self._session().read_ranges()  # track autorange: uncertainty
        ex = await self._exchange("RL")
        return self._ingest(ex.lines)

    def _ingest(self, lines: tuple[str, ...]) -> int:
        new = 0
        for sample in parse_samples(lines, self._ranges, self._accuracy):
            if sample.remote_ns <= self._last_remote_ns:
                continue  # already have it (resent after a reconnect)
            self._last_remote_ns = sample.remote_ns
            new += 1
            if self.phase == "ranging":
                volts, amps = self._ranging_max
                self._ranging_max = [max(volts, sample.max_volts), max(amps, sample.max_amps)]
            for name, watts, u in sample.channels:  # ac1, ac3...: the analyzer's channel numbers
                chan = f"{self.source}{name.removeprefix('Ch')}"
                if chan not in self._buffers:
                    self._buffers[chan] = RingBuffer(self._capacity, with_uncertainty=True)
                    self._health[chan] = MeterHealth(up=True)
                self._store(chan, sample.remote_ns, watts, u)
            self._store(self.source, sample.remote_ns, sample.watts, sample.uncertainty)
        return new

    def _store(self, source: str, remote_ns: int, watts: float, u: float) -> None:
        self._buffers[source].append(remote_ns, watts, u)
        h = self._health[source]
        h.samples += 1
        if not math.isnan(watts):
            self._invalid_run[source] = 0
            h.up = self._conn is not None
            return
        h.error("invalid_sample", "the analyzer reported a bad or missed sample")
        run = self._invalid_run[source] = self._invalid_run.get(source, 0) + 1
        if run >= INVALID_DOWN:  # unplugged, overranged, not answering: not a live source
            h.up = False
            h.last_error = (
                f"no valid reading in the last {run} samples: the analyzer reports bad (-1) or"
                " missed (-2) samples (unplugged, overranged or not answering?)"
            )

    # -- clock offset ---------------------------------------------------------------------------

    def _needs_offset(self) -> bool:
        return (
            self.offset_exchanges > 0
            and not self.clock_offset.accepted
            and self.phase is not None
            and len(self._offset_samples) < self.offset_exchanges
        )

    async def _offset_exchange(self) -> None:
        drain = await self._exchange("RL")
        self._ingest(drain.lines)
        before = self._last_remote_ns
        quick = await self._exchange("R*")
        rl1 = await self._exchange("RL,1", timeout_s=self.interval_ms / 1000 + 5)
        self._ingest(rl1.lines)
        if self._last_remote_ns <= before:
            return  # nothing new: not a bracket
        lower, upper = bracket(drain, quick, rl1)
        self._offset_samples.append((lower, self._last_remote_ns, upper))
        if len(self._offset_samples) >= self.offset_exchanges:
            s, r, v = (np.array(x, dtype=np.int64) for x in zip(*self._offset_samples, strict=True))
            est = offset_by_bracketing(s, r, v)
            self.clock_offset = OffsetEstimate(
                est.offset_ns, est.uncertainty_ns + HALF_MS_NS, "bracketing", est.accepted,
                reason=est.reason,
            )  # fmt: skip
