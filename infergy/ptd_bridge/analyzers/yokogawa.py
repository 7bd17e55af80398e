"""Yokogawa WT300/WT300E driver (WT310, WT310E, WT332E, WT333E) over a serial or USBTMC line.

The conversation (yokotool and IM WT310E-17EN; shared/research/ptd.md §4.1):

- set-up: ``:COMMunicate:REMote ON``, ``:COMMunicate:HEADer OFF``, ``:COMMunicate:VERBose ON``,
  ``:NUMeric:FORMat ASCii``, ``:INPut:MODE RMS|DC``, ``:RATE <interval>``, then per element the
  items ``U, I, P, LAMBda, URANge, IRANge`` (``:NUMeric:NORMal:NUMber`` /
  ``:NUMeric:NORMal:ITEM<x>``), and ``:STATus:FILTer1 FALL`` so that bit 0 of the extended
  event register (UPD) is set each time a data update finishes;
- each reading: ``:COMMunicate:WAIT 1;:STATus:EESR?;:NUMeric:NORMal:VALue?``. The instrument
  holds the message until the next update (no polling), then answers
  ``<eesr>;<v1>,<v2>,...`` and reading the EESR clears it for the next wait. The ranges in
  use come with every reading, so the uncertainty follows autorange exactly.

A reply that does not parse (line noise, a glitching adapter) is counted as garbage; the driver
flushes its input and asks for the same update's values again once (``:NUM:NORM:VAL?`` without
the wait), so a single burst costs no sample.
"""

from __future__ import annotations

from collections.abc import Sequence

from infergy.errors import AnalyzerProtocolError, AnalyzerRangeError, AnalyzerTimeoutError
from infergy.ptd_bridge.analyzers.base import (
    ChannelReading,
    Line,
    RangeState,
    Reading,
    parse_number,
)
from infergy.ptd_bridge.analyzers.specs import ModelSpec, is_emulator_idn, model_from_idn

IDN_ATTEMPTS = 3
STALE_LINES_MAX = 32
"""Replies dropped while resynchronising (answers to commands sent before a stall)."""


def format_interval(update_interval_ms: int) -> str:
    """``100`` -> ``100MS``, ``1000`` -> ``1S`` (the ``:RATE`` argument)."""
    if update_interval_ms % 1000 == 0:
        return f"{update_interval_ms // 1000}S"
    return f"{update_interval_ms}MS"


class YokogawaWT300:
    """A WT300/WT300E-family power analyzer; implements :class:`~.base.Analyzer`.

    Args:
        line: the open line (:func:`~.lines.open_line`).
        channels: elements to read, 1-based (``(1,)`` for a WT310).
        dc: measure in DC mode instead of true rms.
        reply_timeout_s: wait for a reply beyond the update interval.
    """

    family = "wt300"
    _VOLT = ":INP:VOLT"
    _CURR = ":INP:CURR"
    _MODE = ":INP:MODE"
    _RATE = ":RATE"
    _ITEMS_PER_CHANNEL = 6

    def __init__(
        self,
        line: Line,
        *,
        channels: Sequence[int] = (1,),
        dc: bool = False,
        reply_timeout_s: float = 1.0,
    ) -> None:
        self._line = line
        self.channels = tuple(channels)
        self._dc = dc
        self._reply_timeout_s = reply_timeout_s
        self._spec: ModelSpec | None = None
        self._idn = ""
        self._interval_s = 1.0

    @property
    def spec(self) -> ModelSpec:
        """The model (known after :meth:`identify`)."""
        if self._spec is None:
            msg = "the analyzer has not been identified yet"
            raise AnalyzerProtocolError(msg)
        return self._spec

    @property
    def idn(self) -> str:
        """The last ``*IDN?`` reply."""
        return self._idn

    @property
    def simulated(self) -> bool:
        """Whether the instrument is infergy's emulator (its ``*IDN?`` says so)."""
        return is_emulator_idn(self._idn)

    # -- set-up ---------------------------------------------------------------------------------

    def identify(self) -> str:
        """``*IDN?``, dropping stale replies until the identity comes back."""
        self._line.discard_input()
        last: Exception | None = None
        for _ in range(IDN_ATTEMPTS):
            self._line.write("*IDN?")
            try:
                idn = self._read_until_idn()
            except AnalyzerTimeoutError as err:
                last = err
                continue
            self._spec = self._model(idn)
            self._idn = idn
            bad = [c for c in self.channels if not 1 <= c <= self._spec.elements]
            if bad:
                msg = f"the {idn.split(',')[1]} has elements 1-{self._spec.elements}, not {bad}"
                raise AnalyzerRangeError(msg, hint="check -c CH[,CH]")
            return idn
        assert last is not None
        raise last

    def _read_until_idn(self) -> str:
        for _ in range(STALE_LINES_MAX):
            raw, _ = self._line.read_line(self._reply_timeout_s)
            text = raw.decode("ascii", "replace").strip()
            if text.upper().startswith("YOKOGAWA,"):
                return text
        msg = "the analyzer keeps sending data that is not an identity reply"
        raise AnalyzerProtocolError(msg)

    def _model(self, idn: str) -> ModelSpec:
        return model_from_idn(idn)

    def configure(self, update_interval_ms: int) -> None:
        """Remote mode, ASCII, items, update rate, UPD event filter; then check for errors."""
        spec = self.spec
        if update_interval_ms not in spec.update_intervals_ms:
            have = ", ".join(str(i) for i in spec.update_intervals_ms)
            msg = f"the {spec.idn_model} cannot update every {update_interval_ms} ms"
            raise AnalyzerRangeError(msg, hint=f"use one of {have} ms")
        mode = "DC" if self._dc else "RMS"
        commands = [
            ":COMM:REM ON",
            ":COMM:HEAD OFF",
            ":COMM:VERB ON",
            *self._format_commands(),
            f"{self._MODE} {mode}",
            f"{self._RATE} {format_interval(update_interval_ms)}",
            *self._item_commands(),
            ":STAT:FILT1 FALL",
        ]
        for command in commands:
            self._line.write(command)
        self._check_errors("configuring the analyzer")
        self._query(":STAT:EESR?")  # clear pending events: the next wait is for a fresh update
        self._interval_s = update_interval_ms / 1000

    def _format_commands(self) -> list[str]:
        return [":NUM:FORM ASC"]

    def _item_commands(self) -> list[str]:
        functions = ("U", "I", "P", "LAMB", "URAN", "IRAN")
        items = [f"{fn},{ch}" for ch in self.channels for fn in functions]
        numbered = (f":NUM:NORM:ITEM{k} {item}" for k, item in enumerate(items, 1))
        return [f":NUM:NORM:NUM {len(items)}", *numbered]

    # -- ranges ---------------------------------------------------------------------------------

    def read_ranges(self) -> RangeState:
        """Autorange flags and ranges of the first configured element."""
        v, c = self._VOLT, self._CURR
        reply = self._query(f"{v}:AUTO?;{v}:RANG?;{c}:AUTO?;{c}:RANG?")
        try:
            va, vr, aa, ar = (parse_number(x) for x in reply.split(";"))
        except ValueError as err:
            msg = f"unexpected range reply {reply!r}"
            raise AnalyzerProtocolError(msg) from err
        return RangeState(va == 1, vr, aa == 1, ar)

    def set_voltage_range(self, volts: float | None) -> float | None:
        """Fix the voltage range (autorange off) or turn autorange on (``None``)."""
        r = None if volts is None else self.spec.pick_voltage_range(volts)
        self._set_range(self._VOLT, r)
        return r

    def set_current_range(self, amps: float | None) -> float | None:
        """Fix the current range (autorange off) or turn autorange on (``None``)."""
        r = None if amps is None else self.spec.pick_current_range(amps)
        self._set_range(self._CURR, r)
        return r

    def _set_range(self, node: str, value: float | None) -> None:
        if value is None:
            self._line.write(f"{node}:AUTO ON")
        else:
            self._line.write(f"{node}:AUTO OFF;{node}:RANG {value:g}")
        self._check_errors(f"setting {node}")

    # -- readings -------------------------------------------------------------------------------

    def read(self, timeout_s: float) -> Reading:
        """The next update's values (waits for it with ``:COMMunicate:WAIT 1``)."""
        self._line.write(f":COMM:WAIT 1;:STAT:EESR?;{self._value_query()}")
        raw, t_ns = self._line.read_line(timeout_s)
        try:
            return Reading(self._parse(raw, with_event=True), t_ns)
        except ValueError:
            pass
        # garbage: flush and ask for the same update once more, without waiting
        self._line.discard_input()
        self._line.write(self._value_query())
        raw2, _ = self._line.read_line(self._reply_timeout_s)
        try:
            return Reading(self._parse(raw2, with_event=False), t_ns, garbage=1)
        except ValueError as err:
            self._line.discard_input()
            msg = f"garbage from the analyzer: {raw[:40]!r} ({len(raw)} bytes), twice"
            raise AnalyzerProtocolError(msg) from err

    def _value_query(self) -> str:
        return ":NUM:NORM:VAL?"

    def _parse(self, raw: bytes, *, with_event: bool) -> tuple[ChannelReading, ...]:
        """Parse a reply; ValueError when it is not exactly what was asked for."""
        groups = raw.decode("ascii").strip().split(";")  # UnicodeDecodeError is a ValueError
        if with_event:
            int(groups.pop(0))  # the EESR: only its presence is checked
        return self._channels_from(groups)

    def _channels_from(self, groups: list[str]) -> tuple[ChannelReading, ...]:
        if len(groups) != 1:
            raise ValueError(groups)
        values = [parse_number(x) for x in groups[0].split(",")]
        if len(values) != self._ITEMS_PER_CHANNEL * len(self.channels):
            raise ValueError(values)
        out = []
        for k in range(len(self.channels)):
            out.append(self._reading(values[6 * k : 6 * k + 6]))
        return tuple(out)

    def _reading(self, values: Sequence[float]) -> ChannelReading:
        """One element's reading from its items in the order U, I, P, LAMBda, URANge, IRANge."""
        volts, amps, watts, pf, vr, ar = values
        u = self.spec.accuracy.uncertainty(watts, vr, ar, pf)
        return ChannelReading(watts, volts, amps, pf, vr, ar, u)

    # -- helpers --------------------------------------------------------------------------------

    def _query(self, command: str) -> str:
        self._line.write(command)
        raw, _ = self._line.read_line(self._reply_timeout_s)
        return raw.decode("ascii", "replace").strip()

    def _check_errors(self, doing: str) -> None:
        reply = self._query(":STAT:ERR?")
        code = reply.partition(",")[0]
        try:
            failed = int(code) != 0
        except ValueError:
            failed = True
        if failed:
            msg = f"the analyzer reported an error while {doing}: {reply}"
            raise AnalyzerProtocolError(msg)

    def close(self) -> None:
        """Close the line (the instrument stays in remote mode, as PTDaemon leaves it)."""
        self._line.close()
