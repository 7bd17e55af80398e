"""The one interface every analyzer driver implements, and what a reading looks like.

Drivers are synchronous and blocking on purpose: one serial line allows one exchange at a time,
so the bridge runs every call of a driver on one worker thread (never on the event loop) and
each call bounds its own waiting with the serial timeout. Errors are translated at this
boundary into :class:`~infergy.errors.AnalyzerError` subclasses:

- :class:`~infergy.errors.AnalyzerConnectionError`: the port cannot be opened, went away (EIO),
  or the instrument does not answer (:class:`AnalyzerTimeoutError`);
- :class:`~infergy.errors.AnalyzerProtocolError`: a reply does not parse (garbage) or the
  instrument reports a command error;
- :class:`~infergy.errors.AnalyzerRangeError`: a range the model does not have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from infergy.ptd_bridge.analyzers.specs import ModelSpec

INVALID_ABOVE = 9.9e37
"""Yokogawa's overrange (9.9E+37) and no-data (9.91E+37) codes: anything this large is invalid."""


@dataclass(frozen=True, slots=True)
class ChannelReading:
    """One element's values at one update. Invalid values (overrange, no data) are NaN.

    Attributes:
        watts: active power (W), the mean over the update interval.
        volts: rms voltage (V).
        amps: rms current (A).
        pf: power factor λ.
        volt_range_v: the voltage range in use during the update (V).
        current_range_a: the current range in use during the update (A).
        uncertainty: relative uncertainty of ``watts`` (a fraction), NaN when unknown.
    """

    watts: float
    volts: float
    amps: float
    pf: float
    volt_range_v: float
    current_range_a: float
    uncertainty: float

    @property
    def valid(self) -> bool:
        """Whether watts, volts, amps and pf are all real readings."""
        return all(math.isfinite(x) for x in (self.watts, self.volts, self.amps, self.pf))


@dataclass(frozen=True, slots=True)
class Reading:
    """What one update of the analyzer delivered.

    Attributes:
        channels: one reading per configured element, in configuration order.
        received_mono_ns: ``time.monotonic_ns()`` when the reply's first byte arrived: the
            update instant plus the instrument's reply latency.
        garbage: unparseable replies skipped (and recovered from) to get this reading.
    """

    channels: tuple[ChannelReading, ...]
    received_mono_ns: int
    garbage: int = 0


@dataclass(frozen=True)
class RangeState:
    """Range settings as read back from the instrument (``None``: unknown).

    Attributes:
        volts_auto: voltage autorange on.
        volt_range_v: the voltage range in use (V).
        amps_auto: current autorange on.
        current_range_a: the current range in use (A).
    """

    volts_auto: bool | None
    volt_range_v: float | None
    amps_auto: bool | None
    current_range_a: float | None


class Analyzer(Protocol):
    """A power analyzer on a line the caller opened (blocking calls; run them off the loop)."""

    channels: tuple[int, ...]
    """The elements read, 1-based, in the order of :attr:`Reading.channels`."""

    @property
    def spec(self) -> ModelSpec:
        """The model, as identified."""
        ...

    @property
    def idn(self) -> str:
        """The instrument's ``*IDN?`` reply (or the dummy's identity)."""
        ...

    @property
    def simulated(self) -> bool:
        """Whether the instrument measures nothing real (infergy's emulator, the dummy device)."""
        ...

    def identify(self) -> str:
        """Query and return ``*IDN?``, resynchronising the line first (stale replies dropped).

        Raises:
            AnalyzerConnectionError: no answer. AnalyzerProtocolError: not a supported model.
        """
        ...

    def configure(self, update_interval_ms: int) -> None:
        """Remote mode, ASCII numbers, the items to read, the update rate; clears status.

        Raises:
            AnalyzerRangeError: an update interval the model does not have.
            AnalyzerProtocolError: the instrument reports a command error.
        """
        ...

    def read_ranges(self) -> RangeState:
        """Read autorange flags and the ranges in use."""
        ...

    def set_voltage_range(self, volts: float | None) -> float | None:
        """Fix the voltage range, or turn voltage autorange on (``None``).

        A fixed range is the smallest range holding ``volts``, and autorange goes off.
        Returns the range set, ``None`` for auto.
        """
        ...

    def set_current_range(self, amps: float | None) -> float | None:
        """As :meth:`set_voltage_range`, for current (A)."""
        ...

    def read(self, timeout_s: float) -> Reading:
        """Wait for the instrument's next update (``:COMMunicate:WAIT``, not polling) and read it.

        Args:
            timeout_s: longest wait for the reply, update interval included.

        Raises:
            AnalyzerTimeoutError: no reply in time. AnalyzerProtocolError: garbage that could
            not be recovered from. AnalyzerConnectionError: the line went away.
        """
        ...

    def close(self) -> None:
        """Release the line (idempotent)."""
        ...


class Line(Protocol):
    """A command/reply line to an instrument (serial tty, pty or USBTMC)."""

    def write(self, command: str) -> None:
        """Send one command line (the terminator is added)."""
        ...

    def read_line(self, timeout_s: float) -> tuple[bytes, int]:
        """One reply line without its terminator, and the monotonic ns of its first byte."""
        ...

    def discard_input(self) -> int:
        """Drop whatever input is pending; return how many bytes were dropped."""
        ...

    def close(self) -> None:
        """Close the line (idempotent)."""
        ...


def parse_number(token: str) -> float:
    """One numeric field of a reply: NR1/NR2/NR3, ``INF``/``NAN`` or the 9.9E+37 codes -> NaN.

    Raises:
        ValueError: not a number.
    """
    t = token.strip().upper()
    if t in {"INF", "-INF", "+INF", "NAN", "-NAN", "+NAN"}:
        return math.nan
    value = float(t)
    return math.nan if not math.isfinite(value) or abs(value) >= INVALID_ABOVE else value


def sum_uncertainty(channels: Sequence[ChannelReading]) -> float:
    """Relative uncertainty of the channels' summed power, errors taken as correlated."""
    total = sum(c.watts for c in channels)
    if not channels or not math.isfinite(total) or total <= 0:
        return math.nan
    return sum(c.uncertainty * c.watts for c in channels) / total
