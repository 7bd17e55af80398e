"""The bridge's engine: owns the analyzer, reads every update, keeps the measurements.

Every driver call runs on one worker thread (the serial line allows one exchange at a time),
bounded by ``asyncio.timeout``; range changes and reconfigurations queue behind the update
being waited for. The worker reads update after update on its own (:meth:`Bridge._read_burst`)
and hands each reading to the event loop, so the next update is asked for as soon as one is
read: a busy loop (many clients, a session's work beside an in-process bridge) delays when
readings are processed, never whether an update is caught. The analyzer updates at least
every ``max_update_ms`` (250 ms) and
:class:`~.sampling.Sampler` combines updates into samples of the ``Go`` interval, so a command
is answered within one short update even at ``Go,1000``.

When the analyzer goes away (EIO, no answer) the bridge keeps serving: it emits a missed
sample (-2) per interval while it reconnects with capped, jittered exponential backoff, then
reconfigures the analyzer and re-applies the ranges clients had set.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from infergy.core.backoff import Backoff
from infergy.core.clock import SessionClock
from infergy.errors import (
    AnalyzerConnectionError,
    AnalyzerError,
    AnalyzerProtocolError,
    AnalyzerRangeError,
    AnalyzerTimeoutError,
)
from infergy.formats.ptd_protocol import NOTSET, Quantity
from infergy.ptd_bridge.analyzers import Analyzer, DeviceType, ModelSpec, open_analyzer
from infergy.ptd_bridge.analyzers.base import RangeState, Reading
from infergy.ptd_bridge.measurement import UNCERTAINTY_LIMIT, Measurement, Sample
from infergy.ptd_bridge.outputs import BridgeOutputs
from infergy.ptd_bridge.sampling import Sampler, pick_update_ms

T = TypeVar("T")
_MS = 1_000_000
_UNSET = object()
READ_BURST_S = 1.0
"""Longest run of back-to-back reads on the worker before the loop's ``run`` sees it return."""


@dataclass(frozen=True)
class BridgeConfig:
    """How to reach and drive the analyzer.

    Attributes:
        device: the PTDaemon device type.
        port: DEVICE_PORT (serial device, pty, ``/dev/usbtmc*``; ignored by the dummy).
        channels: elements to read (None: 1, or all for a multichannel type).
        baud: serial line speed.
        framing: serial data bits, parity, stop bits.
        interval_ms: sample interval until a ``Go`` asks for another (the cadence of ``R*``).
        max_update_ms: the analyzer's longest update interval; samples combine updates. At
            9600 baud one WT310 reading (~100 bytes both ways) takes ~0.15 s on the wire:
            keep 250 ms there; 100 ms needs a faster line or USB.
        reply_timeout_s: wait for a reply beyond the update interval.
        connect_timeout_s: how long start-up may try to reach the analyzer.
        backoff_max_s: longest wait between reconnection attempts.
    """

    device: DeviceType
    port: str
    channels: tuple[int, ...] | None = None
    baud: int = 9600
    framing: str = "8N1"
    interval_ms: int = 1000
    max_update_ms: int = 250
    reply_timeout_s: float = 1.0
    connect_timeout_s: float = 20.0
    backoff_max_s: float = 5.0


@dataclass
class BridgeStats:
    """Counters since start-up (all samples, in or out of a measurement)."""

    samples: int = 0
    bad: int = 0
    missed: int = 0
    garbage: int = 0
    disconnects: int = 0
    reconnects: int = 0
    reconnect_attempts: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Bridge:
    """The analyzer side of the bridge (the TCP side is :mod:`.server`).

    Args:
        config: the analyzer and how to reach it.
        outputs: console and ``-l`` log.
        clock: stamps samples (converted to UTC wall time).
        opener: opens and identifies the analyzer (default: :func:`open_analyzer`).
    """

    def __init__(
        self,
        config: BridgeConfig,
        outputs: BridgeOutputs,
        clock: SessionClock,
        *,
        opener: Callable[[], Analyzer] | None = None,
    ) -> None:
        self.config = config
        self.out = outputs
        self.clock = clock
        self._opener = opener or functools.partial(
            open_analyzer, config.device, config.port, channels=config.channels,
            baud=config.baud, framing=config.framing, reply_timeout_s=config.reply_timeout_s,
        )  # fmt: skip
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ptd-bridge.analyzer")
        self._calls_waiting = 0  # driver calls queued behind the reads: a burst yields to them
        self._analyzer: Analyzer | None = None
        self.idn = ""
        self.simulated = False
        """The instrument measures nothing real (the emulator, the dummy): clients are told."""
        self.spec: ModelSpec | None = None
        self.driver = config.device.driver
        self.channels: tuple[int, ...] = (1,)
        self.multichannel = config.device.multichannel
        self.interval_ms = config.interval_ms
        self.update_ms = 0
        self.measurement: Measurement | None = None
        self._measurements = 0
        self.latest: Sample | None = None
        self.ranges = RangeState(None, None, None, None)
        self.initial_ranges: RangeState | None = None
        self._wanted: dict[Quantity, object] = {"V": _UNSET, "A": _UNSET}
        self.stats = BridgeStats()
        self.sampler = Sampler(
            numbers=(1,), multichannel=self.multichannel, on_sample=self._emit,
            on_status=self.out.status,
        )  # fmt: skip
        self._new_sample = asyncio.Event()

    @property
    def connected(self) -> bool:
        """Whether the analyzer answers now."""
        return self._analyzer is not None

    @property
    def _reply_s(self) -> float:
        return self.config.reply_timeout_s

    async def _call(
        self, fn: Callable[..., T], *args: object, timeout_s: float, yields: bool = False
    ) -> T:
        """Run ``fn`` on the worker; unless it ``yields`` (a read burst), reads make way for it."""
        loop = asyncio.get_running_loop()
        if not yields:
            self._calls_waiting += 1
        try:
            async with asyncio.timeout(timeout_s + 2.0):
                return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except TimeoutError:
            msg = f"the analyzer call did not return within {timeout_s + 2.0:.1f} s"
            raise AnalyzerTimeoutError(msg) from None
        finally:
            if not yields:
                self._calls_waiting -= 1

    # -- start-up and shutdown ------------------------------------------------------------------

    async def start(self) -> None:
        """Reach, identify and configure the analyzer (PTDaemon's start-up console lines).

        Raises:
            AnalyzerError: the analyzer could not be reached within ``connect_timeout_s``.
        """
        dt = self.config.device
        self.out.console(f"Attempting to connect to measurement device type {dt.number}...")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.connect_timeout_s
        backoff = self._backoff()
        while True:
            try:
                analyzer = await self._open()
                break
            except AnalyzerRangeError:
                raise
            except AnalyzerError as err:
                delay_s = backoff.next_delay_s()
                if loop.time() + delay_s > deadline:
                    self.out.status("ERROR", f"Cannot connect to the analyzer: {err}")
                    raise
                await asyncio.sleep(delay_s)
        idn = f"Analyzer identity response of {len(self.idn)} bytes: {self.idn}"
        self.out.status("NOTICE", idn)
        if self.simulated:  # in the -l log too, so that a recording of it says so
            what = "the dummy device" if dt.number == 0 else "infergy's emulator"
            self.out.status(
                "NOTICE", f"SIMULATED analyzer ({what}): its samples are not measurements"
            )
        self.initial_ranges = await self._call(analyzer.read_ranges, timeout_s=self._reply_s)
        self.ranges = self.initial_ranges
        self.sampler.numbers = self.channels
        self.sampler.configure(self.update_ms * _MS, self.interval_ms // self.update_ms)
        self.out.status("NOTICE", f"Uncertainty checking for {self.driver} is activated")
        self.out.status("NOTICE", f"Connected to {self.driver} successfully")

    async def _open(self) -> Analyzer:
        analyzer = await self._call(self._opener, timeout_s=self._reply_s * 4)
        try:
            if not self.update_ms:
                self.update_ms = self._update_for(self.interval_ms, analyzer.spec)
            await self._call(analyzer.configure, self.update_ms, timeout_s=self._reply_s * 4)
            for quantity, wanted in self._wanted.items():
                if wanted is not _UNSET:
                    setter = self._setter(analyzer, quantity)
                    await self._call(setter, wanted, timeout_s=self._reply_s * 2)
        except AnalyzerError:
            await self._call(analyzer.close, timeout_s=self._reply_s)
            raise
        self._analyzer = analyzer
        self.idn, self.spec, self.channels = analyzer.idn, analyzer.spec, analyzer.channels
        self.simulated = analyzer.simulated
        self.driver = self.config.device.driver_name(analyzer.spec.idn_model)
        return analyzer

    def _update_for(self, interval_ms: int, spec: ModelSpec) -> int:
        update_ms = pick_update_ms(interval_ms, spec.update_intervals_ms, self.config.max_update_ms)
        if update_ms is None:
            msg = f"the {spec.idn_model} cannot sample every {interval_ms} ms"
            hint = f"use a multiple of {min(spec.update_intervals_ms)} ms"
            raise AnalyzerRangeError(msg, hint=hint)
        return update_ms

    async def close(self) -> None:
        """Restore the start-up ranges (best effort), close the analyzer, stop the worker."""
        analyzer, self._analyzer = self._analyzer, None
        if analyzer is not None:
            init = self.initial_ranges
            try:
                if init is not None and init.volts_auto is not None:
                    v = None if init.volts_auto else init.volt_range_v
                    await self._call(analyzer.set_voltage_range, v, timeout_s=self._reply_s * 3)
                if init is not None and init.amps_auto is not None:
                    a = None if init.amps_auto else init.current_range_a
                    await self._call(analyzer.set_current_range, a, timeout_s=self._reply_s * 3)
            except AnalyzerError as err:
                self.out.status("WARNING", f"Could not restore the initial ranges: {err}")
            with contextlib.suppress(AnalyzerError):
                await self._call(analyzer.close, timeout_s=self._reply_s)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- the reading loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Read every update until cancelled; reconnect whenever the analyzer goes away."""
        while True:
            analyzer = self._analyzer
            if analyzer is None:
                await self._reconnect()
                continue
            timeout_s = self.update_ms / 1000 + self._reply_s
            loop = asyncio.get_running_loop()

            def deliver(reading: Reading, loop: asyncio.AbstractEventLoop = loop) -> None:
                loop.call_soon_threadsafe(self._on_reading, reading)

            try:
                await self._call(
                    self._read_burst, analyzer, timeout_s, deliver,
                    timeout_s=READ_BURST_S + timeout_s, yields=True,
                )  # fmt: skip
            except AnalyzerProtocolError as err:
                self._count("protocol")
                self.out.status("ERROR", f"Bad reading from {self.driver}: {err}")
                self.sampler.reading(self.clock.now_ns(), None)
                continue
            except AnalyzerError as err:
                await self._lost(analyzer, err)
                continue

    def _read_burst(
        self, analyzer: Analyzer, timeout_s: float, deliver: Callable[[Reading], object]
    ) -> None:
        """Worker thread: read updates back to back until another call waits (or a while).

        Each reading goes to the loop at once (:meth:`_on_reading`, in order); the next update
        is asked for right away, so how fast the loop runs does not decide what is caught.
        """
        started = time.monotonic()
        while True:
            deliver(analyzer.read(timeout_s))
            if self._calls_waiting or time.monotonic() - started >= READ_BURST_S:
                return

    def _on_reading(self, reading: Reading) -> None:
        """On the loop: one update read (its ranges, garbage counted, into the sampler)."""
        if self._analyzer is None:
            return  # read before the analyzer was lost: the cadence restarts on reconnection
        if reading.garbage:
            self.stats.garbage += reading.garbage
            self.out.status("ERROR", f"Garbage from {self.driver} skipped and read again")
        first = reading.channels[0]
        r = self.ranges
        self.ranges = RangeState(
            r.volts_auto, first.volt_range_v, r.amps_auto, first.current_range_a
        )
        t_ns = self.clock.from_monotonic(reading.received_mono_ns)
        self.sampler.reading(t_ns, reading.channels)

    def _emit(self, sample: Sample) -> None:
        self.latest = sample
        self.stats.samples += 1
        if sample.kind == "bad":
            self.stats.bad += 1
            self.out.status("ERROR", f"Bad watts reading nan from {self._model}")
        elif sample.kind == "missed":
            self.stats.missed += 1
        m = self.measurement
        if m is None or not m.running or not m.add(sample):
            return
        self.out.log(sample.log_line(m.mark))
        if sample.uncertainty > UNCERTAINTY_LIMIT:
            pct = sample.uncertainty * 100
            text = f"Uncertainty {pct:.2f}%, which is above 1.00% limit for the last sample!"
            self.out.status("WARNING", text)
        event, self._new_sample = self._new_sample, asyncio.Event()
        event.set()

    @property
    def _model(self) -> str:
        return self.driver.removeprefix("Yokogawa").split("_")[0]

    async def wait_for_sample(self, timeout_s: float) -> None:
        """Wait until the next sample of the measurement is stored (or ``timeout_s``)."""
        event = self._new_sample
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()

    # -- losing and regaining the analyzer ------------------------------------------------------

    def _count(self, kind: str) -> None:
        self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1

    async def _lost(self, analyzer: Analyzer, err: AnalyzerError) -> None:
        self._count("timeout" if isinstance(err, AnalyzerTimeoutError) else "connection")
        self.stats.disconnects += 1
        self._analyzer = None
        self.out.status("ERROR", f"Lost connection to {self.driver}: {err}")
        with contextlib.suppress(AnalyzerError):
            await self._call(analyzer.close, timeout_s=self._reply_s)
        self.sampler.missed_until(self.clock.now_ns() - self.update_ms * _MS)

    def _backoff(self) -> Backoff:
        return Backoff(0.2, self.config.backoff_max_s)

    async def _reconnect(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        backoff = self._backoff()
        while True:
            end = loop.time() + backoff.next_delay_s()
            while (left := end - loop.time()) > 0:  # keep the cadence: missed samples, live
                await asyncio.sleep(min(left, self.update_ms / 1000))
                self.sampler.missed_until(self.clock.now_ns() - self.update_ms * _MS)
            self.stats.reconnect_attempts += 1
            try:
                await self._open()
            except AnalyzerError:
                continue
            self.stats.reconnects += 1
            self.sampler.rephase()
            took = loop.time() - started
            self.out.status("NOTICE", f"Reconnected to {self.driver} after {took:.1f} s")
            return

    # -- what clients ask for -------------------------------------------------------------------

    async def go(self, interval_ms: int, rampup: int, mark: str | None) -> str | None:
        """Start a measurement; returns an error reply, or None when it started."""
        if self.measurement is not None and self.measurement.running:
            return "Error: a measurement is already running (send Stop first)"
        try:
            update_ms = self._update_for(interval_ms, self.spec) if self.spec else self.update_ms
            if update_ms != self.update_ms and self._analyzer is not None:
                await self._call(self._analyzer.configure, update_ms, timeout_s=self._reply_s * 4)
        except AnalyzerError as err:
            return f"Error: {err}"
        if (update_ms, interval_ms) != (self.update_ms, self.interval_ms):
            self.update_ms, self.interval_ms = update_ms, interval_ms
            self.sampler.configure(update_ms * _MS, interval_ms // update_ms)
        self.sampler.restart_group()
        self._measurements += 1
        self.measurement = Measurement(
            self._measurements, interval_ms, mark or NOTSET, rampup, self.clock.now_ns()
        )
        self.out.status("NOTICE", f"Go with mark '{mark or NOTSET}'")
        return None

    def stop(self) -> bool:
        """End the measurement; False when none was running."""
        m = self.measurement
        if m is None or not m.running:
            return False
        m.running = False
        self.out.status("NOTICE", "Completed test")
        return True

    async def set_range(self, quantity: Quantity, value: float | None) -> float | None:
        """Set a range on the analyzer (None: autorange); returns the range now in use.

        Raises:
            AnalyzerError: refused, out of the model's ranges, or no analyzer connected.
        """
        analyzer = self._analyzer
        if analyzer is None:
            msg = "the analyzer is not connected"
            raise AnalyzerConnectionError(msg)
        setter = self._setter(analyzer, quantity)
        chosen = await self._call(setter, value, timeout_s=self._reply_s * 3)
        self._wanted[quantity] = value
        r = self.ranges
        if quantity == "V":
            vr = chosen or r.volt_range_v
            self.ranges = RangeState(chosen is None, vr, r.amps_auto, r.current_range_a)
        else:
            ar = chosen or r.current_range_a
            self.ranges = RangeState(r.volts_auto, r.volt_range_v, chosen is None, ar)
        what, unit = ("Volt", "V") if quantity == "V" else ("Amp", "A")
        text = "Auto" if chosen is None else f"{chosen:.6f}{unit}"
        self.out.status("NOTICE", f"{what} range set to {text}")
        return chosen

    @staticmethod
    def _setter(analyzer: Analyzer, quantity: Quantity) -> Callable[[float | None], float | None]:
        return analyzer.set_voltage_range if quantity == "V" else analyzer.set_current_range
