"""A recorded power trace played back as a live source, for tests and demos.

The recording is a PTDaemon log or an infergy trace CSV (read by
:func:`infergy.formats.load_power_source`). Playback re-stamps it onto the session clock:
sample *i* appears at ``start + (t_i - t_0) / speed`` and carries that session time. Values are
replayed unchanged, so at ``speed`` s a power trace's energy is 1/s of the recording's while a
counter trace's is unchanged; at speed 1 both equal the recording. A replay is not a measurement
of this session: its source is marked ``simulated`` (kind ``replay``).
"""

from __future__ import annotations

import asyncio
import math
import os

import numpy as np

from infergy.core.clock import SessionClock
from infergy.core.trace import Semantics, Trace
from infergy.errors import InputError
from infergy.formats import LoadedSource, load_power_source
from infergy.meters.base import (
    DEFAULT_CAPACITY,
    MeterHealth,
    OneSourceMeter,
    RingBuffer,
    SourceInfo,
)


class ReplayMeter(OneSourceMeter):
    """Plays one recorded trace back in (accelerated) real time; implements ``Meter``.

    Args:
        recording: a loaded recording, a bare Trace, or a file path.
        clock: the session clock.
        source: the source name to publish it under.
        speed: playback speed (2: twice as fast as recorded).
        capacity: samples kept.
        batch_interval_s: samples due within this interval are appended together.
    """

    name = "replay"

    def __init__(
        self,
        recording: LoadedSource | Trace | str | os.PathLike[str],
        *,
        clock: SessionClock,
        source: str = "replay",
        speed: float = 1.0,
        capacity: int = DEFAULT_CAPACITY,
        batch_interval_s: float = 0.01,
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            msg = f"replay speed must be a positive number, got {speed}"
            raise InputError(msg)
        where = "a trace given in memory"
        if isinstance(recording, Trace):
            loaded = LoadedSource(trace=recording, format="trace")
        elif isinstance(recording, LoadedSource):
            loaded = recording
        else:
            where = os.fspath(recording)
            loaded = load_power_source(recording)
        if len(loaded.trace) == 0:
            msg = f"nothing to replay in {where}"
            raise InputError(msg)
        self.recording = loaded
        self._clock = clock
        self.source = source
        self.speed = float(speed)
        self.batch_interval_s = batch_interval_s
        self._where = where
        self._buffer = RingBuffer(capacity)
        self._health = MeterHealth()
        self.finished = False
        """True once every recorded sample was played."""

    @property
    def _period_ns(self) -> int:
        return max(1, round(self.recording.trace.nominal_period_ns / self.speed))

    def describe(self) -> list[SourceInfo]:
        """The one replayed source (``simulated``: it does not measure this session)."""
        trace = self.recording.trace
        return [
            SourceInfo(
                name=self.source,
                kind="replay",
                device=f"replay of {self._where}",
                semantics=trace.semantics,
                nominal_period_ns=self._period_ns,
                unit="J" if trace.semantics is Semantics.COUNTER else "W",
                simulated=True,
                details={
                    "recording": self._where,
                    "format": self.recording.format,
                    "speed": f"{self.speed:g}",
                    "recorded_start_ns": str(int(trace.t_ns[0])),
                },
            )
        ]

    async def run(self) -> None:
        """Play the recording; returns when it is exhausted (or when cancelled)."""
        trace = self.recording.trace
        start_ns = self._clock.now_ns()
        rel_ns = np.round((trace.t_ns - trace.t_ns[0]) / self.speed).astype(np.int64)
        session_ns = start_ns + rel_ns
        i, n = 0, len(trace)
        self._health.up = True
        while i < n:
            now = self._clock.now_ns()
            j = int(np.searchsorted(session_ns, now, side="right"))
            if j > i:
                self._buffer.extend(session_ns[i:j], trace.values[i:j])
                self._health.samples += j - i
                i = j
            if i < n:
                wait_s = (int(session_ns[i]) - self._clock.now_ns()) / 1e9
                await asyncio.sleep(max(wait_s, self.batch_interval_s))
        self.finished = True
        self._health.up = False
        self._health.last_error = "the recording ended"

    def snapshot(
        self, source: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> Trace:
        """The samples played so far, on the session clock."""
        self._check(source)
        return self._buffer.trace(self.recording.trace.semantics, self._period_ns, start_ns, end_ns)
