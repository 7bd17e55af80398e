"""From analyzer updates to PTD samples: the cadence, missed and late updates, combining.

Pure (no I/O, no clock): :class:`Sampler` is fed each update's arrival time and readings and
calls back with finished :class:`~.measurement.Sample` objects.

The analyzer updates every ``update`` interval (at most 250 ms by default) and a sample covers
``per_sample`` consecutive updates, so that range changes and other commands, which queue
behind the update being waited for, are answered quickly even at ``Go,1000``. Combining
contiguous updates is exact for what PTD reports: mean power is the mean of the updates' means,
rms volts and amps are the root of the mean squares, the power factor is P / (V I), and the
relative uncertainty is the power-weighted mean of the updates' (errors taken as correlated).

Against the expected cadence (the previous update + one interval), an update that arrives:

- after the update that follows it was due (less the reply tolerance) means updates were
  missed: the analyzer keeps only its latest update, so one that was not read before the next
  one came is gone. Each missing slot is a missed update, and a sample with a missed update is
  a missed sample (-2); nothing is invented;
- late by less (a slow analyzer, a loaded host) is stamped at its expected time and counted
  late: it cannot be a later update, since none had happened yet, so it is not lost;
- unreadable (garbage the driver could not recover from) makes its sample bad (-1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from infergy.ptd_bridge.analyzers.base import ChannelReading
from infergy.ptd_bridge.measurement import Sample, make_sample, sentinel_sample

LATE_TOLERANCE_NS = 10_000_000
"""Replies later than this (or 1/20 of the interval, if larger) are counted late."""

Update = tuple[ChannelReading, ...] | None
"""One update's readings, one per channel; None for an update that could not be read."""


def combine(updates: Sequence[tuple[ChannelReading, ...]]) -> tuple[ChannelReading, ...]:
    """Combine contiguous, equally long updates into one reading per channel (exactly)."""
    if len(updates) == 1:
        return updates[0]
    out = []
    for ch in zip(*updates, strict=True):
        n = len(ch)
        watts = sum(r.watts for r in ch) / n
        volts = math.sqrt(sum(r.volts**2 for r in ch) / n)
        amps = math.sqrt(sum(r.amps**2 for r in ch) / n)
        pf = min(1.0, watts / (volts * amps)) if volts > 0 and amps > 0 else math.nan
        total_w = sum(r.watts for r in ch)
        u = sum(r.uncertainty * r.watts for r in ch) / total_w if total_w > 0 else math.nan
        vr, ar = max(r.volt_range_v for r in ch), max(r.current_range_a for r in ch)
        out.append(ChannelReading(watts, volts, amps, pf, vr, ar, u))
    return tuple(out)


class Sampler:
    """Slots, missed/late updates and grouping into samples.

    Args:
        numbers: the element numbers read (``Ch<n>`` labels).
        multichannel: whether samples carry the sum and each channel.
        on_sample: called with each finished sample.
        on_status: called with (level, text) for the console and log.
    """

    def __init__(
        self,
        *,
        numbers: tuple[int, ...],
        multichannel: bool,
        on_sample: Callable[[Sample], None],
        on_status: Callable[[str, str], None],
    ) -> None:
        self.numbers = numbers
        self.multichannel = multichannel
        self._on_sample = on_sample
        self._on_status = on_status
        self.update_ns = 1_000_000_000
        self.per_sample = 1
        self._last_slot_ns: int | None = None
        self._rephase = False
        self._group: list[tuple[ChannelReading, ...] | str] = []
        self._group_late = False
        self._late_run = 0
        self.late_updates = 0
        self.missed_updates = 0
        self.bad_updates = 0

    def configure(self, update_ns: int, per_sample: int) -> None:
        """A new update interval and grouping: the cadence starts again."""
        self.update_ns, self.per_sample = update_ns, per_sample
        self._last_slot_ns = None
        self.restart_group()

    def restart_group(self) -> None:
        """Start the next sample with the next update (at ``Go``)."""
        self._group, self._group_late = [], False

    def rephase(self) -> None:
        """After a reconnection: the next update sets a new phase (not counted late)."""
        self._rephase = True

    def reading(self, t_ns: int, channels: Update) -> None:
        """An update arrived at ``t_ns`` (its first byte); ``None`` if it was unreadable."""
        late = False
        if self._last_slot_ns is not None:
            tolerance = max(LATE_TOLERANCE_NS, self.update_ns // 20)
            # Missed: the slots whose following update was due before this reply came.
            self.missed_until(t_ns - self.update_ns + tolerance)
            expected = self._last_slot_ns + self.update_ns
            if not self._rephase and t_ns - expected > tolerance:
                late, t_ns = True, expected
        self._rephase = False
        self._note_late(late)
        self._last_slot_ns = t_ns
        if channels is None:
            self.bad_updates += 1
        self._push(t_ns, channels if channels is not None else "bad", late)

    def missed_until(self, until_ns: int) -> int:
        """Count every expected slot up to ``until_ns`` as missed; returns missed samples."""
        if self._last_slot_ns is None:
            return 0
        samples = 0
        while self._last_slot_ns + self.update_ns <= until_ns:
            self._last_slot_ns += self.update_ns
            self.missed_updates += 1
            samples += self._push(self._last_slot_ns, "missed", False)
        if samples:
            self._on_status("WARNING", f"Missed {samples} samples")
        return samples

    def _push(self, t_ns: int, update: tuple[ChannelReading, ...] | str, late: bool) -> int:
        self._group.append(update)
        self._group_late = self._group_late or late
        if len(self._group) < self.per_sample:
            return 0
        group, self._group = self._group, []
        multi, numbers = self.multichannel, self.numbers
        missed = 0
        if "missed" in group:
            sample = sentinel_sample(t_ns, "missed", numbers, multichannel=multi)
            missed = 1
        elif "bad" in group:
            sample = sentinel_sample(t_ns, "bad", numbers, multichannel=multi)
        else:
            readings = combine([u for u in group if not isinstance(u, str)])
            late = self._group_late
            sample = make_sample(t_ns, readings, numbers=numbers, multichannel=multi, late=late)
        self._group_late = False
        self._on_sample(sample)
        return missed

    def _note_late(self, late: bool) -> None:
        if late:
            self.late_updates += 1
            if self._late_run == 0:
                self._on_status(
                    "WARNING", "Analyzer replies are late; samples stamped at their update time"
                )
            self._late_run += 1
        elif self._late_run:
            self._on_status(
                "NOTICE", f"Analyzer replies on time again after {self._late_run} late updates"
            )
            self._late_run = 0


def pick_update_ms(interval_ms: int, supported: Sequence[int], max_update_ms: int) -> int | None:
    """The analyzer update interval for a sample interval (None: none fits).

    The largest supported interval that divides the sample interval and is at most
    ``max_update_ms`` (or the shortest supported one, if that is longer).
    """
    top = max(max_update_ms, min(supported))
    fits = [u for u in supported if u <= top and interval_ms % u == 0]
    return max(fits) if fits else None
