"""Samples, measurements and per-client RL bookkeeping of the bridge, pure (no I/O, no clock).

A :class:`Sample` is one analyzer update as PTDaemon reports it: watts, volts, amps and power
factor per channel (the sum first on a multichannel analyzer), with PTDaemon's sentinels for
what is not a reading: -1 a bad reading (overrange, garbage), -2 a missed sample (no answer).
Its ``RL`` line is formatted once, when it is made, and shared by every client that reads it.

A :class:`Measurement` is what one ``Go`` ... ``Stop`` collected; ``Watts`` and ``Uncertainty``
summarise the current or last one. A :class:`Cursor` is one client's read position: a client
that connects during a measurement has all of it unread (a client that reconnects after a drop
loses nothing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from infergy.formats.ptd import format_multichannel_sample_line, format_sample_line
from infergy.ptd_bridge.analyzers.base import ChannelReading, sum_uncertainty

BAD = -1.0
MISSED = -2.0
UNCERTAINTY_LIMIT = 0.01
"""MLPerf's per-sample limit (1 %); samples above it are counted ``invalid`` by ``Uncertainty``."""

Kind = Literal["ok", "bad", "missed"]
Values = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Sample:
    """One reported sample.

    Attributes:
        t_ns: end of the sample's interval (ns, UTC, the bridge's clock).
        kind: ``ok``, ``bad`` (-1) or ``missed`` (-2).
        channels: (watts, volts, amps, pf) per channel, sentinels applied.
        uncertainty: relative uncertainty of the (summed) watts, NaN when unknown.
        channel_uncertainty: the same per channel.
        numbers: the channels' element numbers (the ``Ch<n>`` labels).
        multichannel: the RL line carries the sum and ``Ch<n>`` groups.
        late: the analyzer answered late; stamped at its expected update time.
        line: the ``RL`` reply line.
    """

    t_ns: int
    kind: Kind
    channels: tuple[Values, ...]
    uncertainty: float
    channel_uncertainty: tuple[float, ...]
    numbers: tuple[int, ...]
    multichannel: bool
    late: bool = False
    line: str = field(default="", compare=False)

    @property
    def watts(self) -> float:
        """The (summed) watts, or the sentinel."""
        if self.kind != "ok":
            return BAD if self.kind == "bad" else MISSED
        return sum(c[0] for c in self.channels)

    @property
    def volts(self) -> float:
        """Volts of a single-channel sample (-1 for a multichannel sum)."""
        return self.channels[0][1] if len(self.channels) == 1 and not self.multichannel else -1.0

    def log_line(self, mark: str) -> str:
        """The ``-l`` log line: the RL line with ``,Mark,<mark>`` after the (sum) group."""
        return _format(
            self.t_ns, self.channels, numbers=self.numbers, multi=self.multichannel,
            total_w=self.watts, mark=mark,
        )  # fmt: skip


def _format(
    t_ns: int,
    channels: tuple[Values, ...],
    *,
    numbers: tuple[int, ...],
    multi: bool,
    total_w: float,
    mark: str | None = None,
) -> str:
    if multi:
        by_number = dict(zip(numbers, channels, strict=True))
        return format_multichannel_sample_line(t_ns, by_number, mark=mark, total_watts=total_w)
    return format_sample_line(t_ns, *channels[0], mark=mark)


def make_sample(
    t_ns: int,
    readings: Sequence[ChannelReading],
    *,
    numbers: tuple[int, ...],
    multichannel: bool,
    late: bool = False,
) -> Sample:
    """A sample from one reading of the elements ``numbers``.

    Any invalid channel (overrange, no data) makes it a bad (-1) sample.
    """
    if not readings or not all(r.valid for r in readings):
        return sentinel_sample(t_ns, "bad", numbers, multichannel=multichannel)
    channels = tuple((r.watts, r.volts, r.amps, r.pf) for r in readings)
    total_w = sum(c[0] for c in channels)
    line = _format(t_ns, channels, numbers=numbers, multi=multichannel, total_w=total_w)
    per_channel = tuple(r.uncertainty for r in readings)
    u = sum_uncertainty(readings)
    return Sample(t_ns, "ok", channels, u, per_channel, numbers, multichannel, late, line)


def sentinel_sample(
    t_ns: int, kind: Kind, numbers: tuple[int, ...], *, multichannel: bool
) -> Sample:
    """A bad (-1) or missed (-2) sample of the elements ``numbers``: every value the sentinel."""
    s = BAD if kind == "bad" else MISSED
    channels = tuple((s, s, s, s) for _ in numbers)
    n_channels = len(numbers)
    line = _format(t_ns, channels, numbers=numbers, multi=multichannel, total_w=s)
    nan = (math.nan,) * n_channels
    return Sample(t_ns, kind, channels, math.nan, nan, numbers, multichannel, line=line)


class Measurement:
    """The samples of one ``Go`` ... ``Stop``.

    Args:
        number: increases with every ``Go`` (cursors use it to notice a new measurement).
        interval_ms: the sample interval asked for.
        mark: the mark given with ``Go`` (``notset`` if none).
        rampup: samples to leave out at the start.
        started_ns: when ``Go`` came; a sample that ended before it is not part of it.
    """

    def __init__(
        self, number: int, interval_ms: int, mark: str, rampup: int = 0, started_ns: int = 0
    ) -> None:
        self.number = number
        self.started_ns = started_ns
        self.interval_ms = interval_ms
        self.mark = mark
        self.rampup_left = rampup
        self.running = True
        self.samples: list[Sample] = []

    def add(self, sample: Sample) -> bool:
        """Keep ``sample`` unless it ended before ``Go`` or is a ramp-up sample."""
        if sample.t_ns < self.started_ns:
            return False
        if self.rampup_left > 0:
            self.rampup_left -= 1
            return False
        self.samples.append(sample)
        return True

    def watts_reply(self) -> str:
        """``Watts,<avg>,<min>,<max>,<samples>,<errors>,<valid>`` over the valid samples."""
        good = [s.watts for s in self.samples if s.kind == "ok"]
        n = len(self.samples)
        if not good:
            return f"Watts,{BAD:.6f},{BAD:.6f},{BAD:.6f},{n},{n},0"
        avg = sum(good) / len(good)
        return f"Watts,{avg:.6f},{min(good):.6f},{max(good):.6f},{n},{n - len(good)},{len(good)}"

    def uncertainty_reply(self, *, all_channels: bool = False) -> str:
        """``Uncertainty,<avg>,<min>,<max>,<total>,<invalid>,<valid>,<unknown>`` (fractions).

        ``invalid``: above the 1 % limit; ``unknown``: not evaluable (bad/missed samples);
        ``all_channels`` appends one such group per channel after the sum's.
        """
        groups = [_uncertainty_group([s.uncertainty for s in self.samples])]
        if all_channels and self.samples and self.samples[0].multichannel:
            n = len(self.samples[0].channel_uncertainty)
            for c in range(n):
                groups.append(_uncertainty_group([s.channel_uncertainty[c] for s in self.samples]))
        return "Uncertainty," + ",".join(groups)


def _uncertainty_group(values: list[float]) -> str:
    known = [u for u in values if math.isfinite(u)]
    invalid = sum(u > UNCERTAINTY_LIMIT for u in known)
    unknown = len(values) - len(known)
    if not known:
        return f"{BAD:.6f},{BAD:.6f},{BAD:.6f},{len(values)},{invalid},0,{unknown}"
    avg = sum(known) / len(known)
    valid = len(known) - invalid
    return f"{avg:.6f},{min(known):.6f},{max(known):.6f},{len(values)},{invalid},{valid},{unknown}"


@dataclass
class Cursor:
    """One client's read position in the current measurement."""

    measurement: int = -1
    position: int = 0

    def unread(self, m: Measurement | None) -> int:
        """How many samples of ``m`` this client has not read."""
        if m is None:
            return 0
        return len(m.samples) - (self.position if self.measurement == m.number else 0)

    def take(self, m: Measurement | None, newest: int | None = None) -> list[Sample]:
        """The unread samples (only the newest ``newest``); all of them count as read now."""
        if m is None:
            return []
        if self.measurement != m.number:
            self.measurement, self.position = m.number, 0
        out = m.samples[self.position :]
        self.position = len(m.samples)
        return out if newest is None else out[-newest:]

    def take_all(self, m: Measurement | None) -> list[Sample]:
        """Every sample of ``m`` (``RL,*``); all of them count as read now."""
        if m is None:
            return []
        self.measurement, self.position = m.number, len(m.samples)
        return list(m.samples)
