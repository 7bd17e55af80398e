"""One GPU's sampling for the NVML meter: what is read, how often, how it is time-stamped.

Per GPU, one asyncio task schedules the reads and one dedicated worker thread makes them (NVML
calls block), so the event loop never waits on NVML and one slow GPU never delays another. Each
tick reads the signals that are due:

- ``counter``: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ -> J), mid-way between its
  updates, each value stamped at the update that produced it
  (:mod:`infergy.meters.nvml_counter`). Unchanged readings are not stored. This read is the
  meter's main cost: 2.7-12 ms of CPU each, ~4 % of a core per GPU at every update. So it is
  read *sparsely* (every ``counter_sparse_interval_s``, ~1 s, on the update grid) while the
  20-ms samples give the shape in between, and *densely* (every update period, or every
  ``counter_poll_factor``-th) in spans asked for by :meth:`GpuSampler.dense_counter` (the
  session's window edges) and always when there is no sample buffer or no sparse interval.
  The schedule lives on the sampler: a change (a dense span, a new poll factor) wakes its
  task and applies at once, not after the read already planned up to a second away.
- ``samples``: the driver's power sample buffer (``nvmlDeviceGetSamples``, 20 ms on Hopper),
  read in batches (every 0.5 s, at most 40% of the buffer's depth) with the last seen
  timestamp. Its timestamps are CPU wall-clock µs; each batch is moved onto the session clock
  with the wall/session offset measured at that read (``SessionClock.wall_offset_ns``), which
  follows NTP slewing within the batch's age (< 1 ms at 500 ppm).
- ``instant``: ``NVML_FI_DEV_POWER_INSTANT`` every 0.1 s, only without a sample buffer.
- ``average``: ``NVML_FI_DEV_POWER_AVERAGE`` every second: each reading is the mean over the
  second before it, an ``interval_mean`` trace.
- ``context`` (1 Hz): power limit, clocks, temperature, clock-event reasons, utilization,
  memory power.

Failures: a signal that is not supported (or not permitted) is dropped with its reason; a lost
GPU marks every source down, puts a NaN in the counter trace (the outage is a gap, never
zeros), and reconnection is retried with jittered exponential backoff; a counter that went back
(driver reload) is reported as a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from infergy.core.backoff import Backoff
from infergy.core.clock import SessionClock
from infergy.core.trace import Trace
from infergy.errors import GpuError, GpuLostError, GpuNotSupportedError, GpuPermissionError
from infergy.meters.base import MeterHealth, RingBuffer, SourceInfo
from infergy.meters.gpu import FieldReading, GpuContext, GpuDevice
from infergy.meters.nvml_counter import CounterTracker
from infergy.meters.nvml_probe import (
    CONTEXT_METRICS,
    GpuCapabilities,
    NvmlMeterConfig,
    SourceSpec,
    probe_gpu,
    read_context,
    source_infos,
    source_specs,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")


class GpuSampler:
    """Samples one GPU's signals into ring buffers (owned by ``NvmlMeter``).

    Args:
        source: the GPU's source name (``gpu0``); its other sources get suffixes.
        gpu: the device.
        clock: the session clock every timestamp is on.
        config: rates and policies.
        capacity: samples kept per power source.
    """

    def __init__(
        self,
        source: str,
        gpu: GpuDevice,
        clock: SessionClock,
        config: NvmlMeterConfig,
        capacity: int,
    ) -> None:
        self.source = source
        self.gpu = gpu
        self._clock = clock
        self._config = config
        self._buffers = {sig: RingBuffer(capacity) for sig in ("counter", "samples", "average")}
        self._health = {sig: MeterHealth() for sig in ("counter", "samples", "average")}
        self._context = {m: RingBuffer(config.context_capacity) for m in CONTEXT_METRICS}
        self.latest_context: GpuContext | None = None
        self.caps = GpuCapabilities()
        self._intervals_s: dict[str, float] = {}  # the signals being read -> period, s
        self._context_calls: list[str] = []
        self._specs: dict[str, SourceSpec] = {}
        self._counter = CounterTracker(config.counter_default_period_s)
        self._samples_since_us = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"nvml-{source}")
        self._due_at: dict[str, float] = {}  # signal -> time.monotonic() of its next read
        self._dense_until_s = 0.0  # time.monotonic() until which the counter is read densely
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self.counter_reads = 0
        """Energy-counter reads made so far (its CPU cost is per read)."""

    def probe(self) -> None:
        """Find which signals work and how fast they update (blocking; at open)."""
        self.caps = probe_gpu(self.gpu, self._config)
        self._counter = CounterTracker(self.caps.counter_period_s)
        self._intervals_s = dict(self.caps.intervals_s)
        self._context_calls = list(self.caps.context_calls)
        self._specs = source_specs(self.source, self.caps)

    def probe_in_worker(self) -> Future[None]:
        """Run :meth:`probe` in this GPU's worker thread (GPUs probe in parallel)."""
        return self._executor.submit(self.probe)

    def infos(self) -> list[SourceInfo]:
        """The sources of this GPU (``gpuN``, ``gpuN.samples``, ``gpuN.avg``), as available."""
        return source_infos(self._specs, self.gpu.identity, self.caps)

    # -- data out ---------------------------------------------------------------------------

    @property
    def source_names(self) -> list[str]:
        """This GPU's source names."""
        return list(self._specs)

    def trace(self, source: str, start_ns: int | None, end_ns: int | None) -> Trace:
        """The buffered samples of one of this GPU's sources."""
        spec = self._specs[source]
        return self._buffers[spec.buffer].trace(
            spec.semantics, spec.nominal_period_ns, start_ns, end_ns
        )

    def samples_after(self, source: str, after_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """(t_ns, values) of one source with ``t_ns > after_ns`` (KeyError: not this GPU's)."""
        return self._buffers[self._specs[source].buffer].after(after_ns)

    def health(self) -> dict[str, MeterHealth]:
        """Health per source (a source sharing a buffer shares its health)."""
        out = {}
        for name, spec in self._specs.items():
            self._health[spec.buffer].dropped = self._buffers[spec.buffer].dropped
            out[name] = self._health[spec.buffer]
        return out

    def context_arrays(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(t_ns, values) of one context series (see :data:`CONTEXT_METRICS`)."""
        return self._context[metric].arrays()[:2]

    def close(self) -> None:
        """Stop the worker thread (a call still inside NVML finishes on its own)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- the task ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Read every due signal on its schedule until cancelled."""
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        if "counter" in self._intervals_s and await self._call(self._tick, ["resync"]):
            await self._recover()
        self._due_at = due_at = self._fresh_schedule()
        while True:
            now = time.monotonic()
            due = [sig for sig, at in due_at.items() if at <= now + 1e-4]
            if due:
                lost = await self._call(self._tick, due)
                if lost:
                    await self._recover()
                    self._due_at = due_at = self._fresh_schedule()
                    continue
                self._reschedule(due_at, due)
            delay = max(0.0, min(due_at.values()) - time.monotonic()) if due_at else None
            if await self._sleep(delay) and "counter" in due_at:
                due_at["counter"] = self._counter_due()  # the new schedule, from now

    async def _sleep(self, delay_s: float | None) -> bool:
        """Sleep ``delay_s`` (None: until woken); True when woken by a schedule change."""
        try:
            async with asyncio.timeout(delay_s):
                await self._wake.wait()
        except TimeoutError:
            return False
        self._wake.clear()
        return True

    def _changed(self) -> None:
        """Wake the task so a schedule change applies now (callable from any thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing: nothing to wake
                loop.call_soon_threadsafe(self._wake.set)

    def set_counter_poll_factor(self, factor: float) -> None:
        """Read the counter every ``factor`` update periods where it is read densely, now."""
        self._config = dataclasses.replace(self._config, counter_poll_factor=max(1.0, factor))
        self._changed()

    def dense_counter(self, for_s: float) -> None:
        """Read the counter at the dense rate from now until ``for_s`` from now (any thread).

        The span replaces any earlier one (``for_s = 0`` ends it), so a caller that does not
        know yet when its window starts can ask for a long span, then shorten it.
        """
        self._dense_until_s = time.monotonic() + max(0.0, for_s)
        self._changed()

    @property
    def counter_sparse(self) -> bool:
        """True when the counter is read sparsely now (outside a dense span, with samples)."""
        return (
            self._config.counter_sparse_interval_s > 0
            and "samples" in self._intervals_s
            and time.monotonic() >= self._dense_until_s
        )

    def _fresh_schedule(self) -> dict[str, float]:
        now = time.monotonic()
        due_at = dict.fromkeys(self._intervals_s, now)
        if "counter" in due_at:
            due_at["counter"] = self._counter_due()
            due_at["resync"] = self._resync_due(self._resync_interval_s())
        return due_at

    def _reschedule(self, due_at: dict[str, float], done: Sequence[str]) -> None:
        """Plan the next read of each signal just read: the counter by its phase model."""
        now = time.monotonic()
        for sig in done:
            period = self._intervals_s.get(sig)
            if sig == "resync":
                due_at[sig] = self._resync_due(self._resync_interval_s())
            elif period is None:  # dropped while reading
                due_at.pop(sig, None)
            elif sig == "counter":
                due_at[sig] = self._counter_due()
            else:  # stay on the grid, skipping missed slots
                due_at[sig] += max(1, math.ceil((now - due_at[sig]) / period)) * period
        if "counter" not in self._intervals_s:
            due_at.pop("counter", None)
            due_at.pop("resync", None)
        elif self._counter.resync_wanted:
            self._counter.resync_wanted = False
            due_at["resync"] = self._resync_due(0.0)

    def _resync_interval_s(self) -> float:
        return self._counter.resync_interval_s(self._config.counter_resync_s)

    def _mono_s(self, t_ns: float) -> float:
        """A session-clock time as ``time.monotonic()`` seconds (the scheduler's clock)."""
        return (t_ns - self._clock.wall0_ns + self._clock.mono0_ns) / 1e9

    def _counter_due(self) -> float:
        c = self._config
        sparse_s = c.counter_sparse_interval_s if self.counter_sparse else 0.0
        interval_ns = self._counter.read_interval_ns(
            c.counter_poll_factor, c.counter_min_interval_s, sparse_s
        )
        return self._mono_s(self._counter.next_read_ns(self._clock.now_ns(), interval_ns))

    def _resync_due(self, after_s: float) -> float:
        """A few ms before the first update after ``after_s`` from now."""
        after_ns = self._clock.now_ns() + round(after_s * 1e9)
        return self._mono_s(self._counter.resync_start_ns(after_ns))

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` in this GPU's worker; a slow call marks the sources down until it returns."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, functools.partial(fn, *args))
        # asyncio.wait, not wait_for: 3.11's wait_for swallows a cancellation that arrives as
        # the call completes, and the task would then never stop.
        try:
            done, _pending = await asyncio.wait({future}, timeout=self._config.call_timeout_s)
        except asyncio.CancelledError:
            # The call goes on in the worker thread and would append its samples after run()
            # returned: let it finish first (bounded), so that a stopped meter stays still.
            await asyncio.wait({future}, timeout=self._config.call_timeout_s)
            raise
        if not done:
            message = (
                f"{self.source}: an NVML call has taken over {self._config.call_timeout_s:g} s; "
                "sources down until it returns"
            )
            logger.warning("%s", message)
            for health in self._health.values():
                health.up = False
                health.error("timeout", message)
        return await future

    async def _recover(self) -> None:
        backoff = Backoff(self._config.recovery_initial_s, self._config.recovery_max_s)
        while True:
            await asyncio.sleep(backoff.next_delay_s())
            if await self._call(self._reconnect, backoff.failures):
                return

    # -- in the worker thread ----------------------------------------------------------------

    def _tick(self, due: Sequence[str]) -> bool:
        """Read the due signals; True when the GPU was lost."""
        for sig in due:
            if sig not in self._intervals_s and sig != "resync":
                continue
            try:
                self._read(sig)
            except GpuLostError as err:
                self._on_lost(err)
                return True
            except (GpuNotSupportedError, GpuPermissionError) as err:
                self._drop(sig, err)
            except GpuError as err:
                self._health_of(sig).error("error", str(err))
        return False

    def _read(self, sig: str) -> None:
        if sig == "resync":
            self._resync_counter()
        elif sig == "counter":
            self._read_counter()
        elif sig == "samples":
            self._read_samples()
        elif sig == "instant":
            self._read_field("samples", self.gpu.power_instant)
        elif sig == "average":
            self._read_field("average", self.gpu.power_average)
        else:
            self._read_context()

    def _health_of(self, sig: str) -> MeterHealth:
        """The health a signal's errors count in (context errors: the GPU's main source)."""
        buf = {"instant": "samples", "resync": "counter"}.get(sig, sig)
        if buf not in self._health:
            main = self._specs.get(self.source)
            buf = "counter" if main is None else main.buffer
        return self._health[buf]

    def _record(self, buf: str, t_ns: int, value: float) -> None:
        self._buffers[buf].append(t_ns, value)
        health = self._health[buf]
        health.samples += 1
        health.up = True

    def _read_counter(self) -> bool:
        """Read the energy counter; True when a new value was stored."""
        t0 = self._clock.now_ns()
        self.counter_reads += 1
        mj = self.gpu.energy_mj()
        reading = self._counter.read(t0, mj, self._clock.now_ns())
        health = self._health["counter"]
        health.up = True
        if reading.restarted_from_mj is not None:
            health.error(
                "counter_reset",
                f"{self.source}: the energy counter restarted ({reading.restarted_from_mj} -> "
                f"{mj} mJ, driver reloaded?); the outage is a gap",
            )
        if reading.stamp_ns is None:
            return False
        if reading.went_back:
            health.error(
                "counter_reset",
                f"{self.source}: the energy counter went back (to {mj} mJ); "
                "that interval is not counted",
            )
        self._record("counter", reading.stamp_ns, mj / 1000.0)
        return True

    def _resync_counter(self) -> None:
        """Read tightly until an update is pinned (phase model), at most 2.5 periods."""
        seen = self._counter.observed
        deadline = time.monotonic() + 2.5 * self._counter.phase_period_ns / 1e9
        self._read_counter()
        while self._counter.observed == seen and time.monotonic() < deadline:
            time.sleep(self._config.calibration_pause_s)
            self._read_counter()

    def _read_samples(self) -> None:
        batch = self.gpu.power_samples(self._samples_since_us)
        if not len(batch):
            return
        offset_ns = self._clock.wall_offset_ns()
        health = self._health["samples"]
        since = self._samples_since_us
        gap_us = int(batch.t_wall_us[0]) - since
        if since and gap_us > 3 * self.caps.sample_period_s * 1e6:
            health.error(
                "samples_gap",
                f"{self.source}.samples: {gap_us / 1e3:.0f} ms without samples (buffer overrun "
                "or driver pause)",
            )
        self._buffers["samples"].extend(batch.t_wall_us * 1000 - offset_ns, batch.power_mw / 1e3)
        health.samples += len(batch)
        health.up = True
        self._samples_since_us = int(batch.t_wall_us[-1])

    def _read_field(self, buf: str, read: Callable[[], FieldReading]) -> None:
        t0 = self._clock.now_ns()
        reading = read()
        mid = (t0 + self._clock.now_ns()) // 2
        t_us = reading.t_wall_us
        t_ns = t_us * 1000 - self._clock.wall_offset_ns() if t_us > 0 else mid
        last = self._buffers[buf].last_t_ns
        if last is None or t_ns > last:  # a field read twice within its update gives one sample
            self._record(buf, t_ns, reading.power_mw / 1e3)

    def _read_context(self) -> None:
        values, dropped, errors = read_context(self.gpu, self._context_calls)
        for call, err in dropped:
            self._context_calls.remove(call)
            self.caps.status[call] = f"dropped: {err}"
        for err in errors:
            self._health_of("context").error("context_error", str(err))
        t_ns = self._clock.now_ns()
        for metric, value in values.items():
            self._context[metric].append(t_ns, float(value))
        reasons = values.pop("clock_event_reasons", None)
        self.latest_context = GpuContext(
            t_ns=t_ns, clock_event_reasons=None if reasons is None else int(reasons), **values
        )

    def _drop(self, sig: str, err: GpuError) -> None:
        kind = "no_permission" if isinstance(err, GpuPermissionError) else "not_supported"
        self._intervals_s.pop(sig, None)
        self.caps.status[sig] = f"dropped: {err}"
        health = self._health_of(sig)
        health.up = False
        health.error(kind, str(err))
        logger.warning("%s: stopped reading %s: %s", self.source, sig, err)

    def _on_lost(self, err: GpuError) -> None:
        logger.warning("%s: GPU lost, retrying: %s", self.source, err)
        for health in self._health.values():
            health.up = False
            health.error("gpu_lost", str(err))
        self._counter.lost()
        if "counter" in self._intervals_s:  # the outage is a gap in the counter, never zeros
            self._buffers["counter"].append(self._clock.now_ns(), math.nan)

    def _reconnect(self, attempt: int) -> bool:
        try:
            self.gpu.reconnect()
        except GpuError as err:
            for health in self._health.values():
                health.last_error = f"still lost after {attempt} reconnection tries: {err}"
            return False
        logger.warning("%s: GPU back after %d tries", self.source, attempt)
        return "counter" not in self._intervals_s or not self._tick(["resync"])
