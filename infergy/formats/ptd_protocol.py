"""PTDaemon's TCP dialect, pure: request lines -> commands, replies -> exact strings.

The one public home of the PTD wire protocol, shared by its server and its client. No I/O and
no clock here; the bridge (:mod:`infergy.ptd_bridge.server`) feeds lines in and writes replies
out, infergy's ``ptd`` meter (:mod:`infergy.meters.ptd_client`) parses what a bridge or a real
PTDaemon answers with the ``parse_*`` functions. Reply texts are PTDaemon's, as its clients
check them byte for byte (power-dev's ``check_reply``; shared/design/PTD.md, "TCP protocol").
Per-client RL bookkeeping and the Watts/Uncertainty summaries are in
:mod:`infergy.ptd_bridge.measurement`.

The ``RL`` forms, as PTDaemon's clients use them (SPEC's harness, power-dev):

- ``RL`` (and ``DC-RL``): every sample this client has not read yet; ``No unread samples`` if
  none (it does not wait);
- ``RL,<n>``: the newest ``n`` unread samples, everything older counts as read; when nothing is
  unread it waits up to one sample interval for the next sample (SPEC's harness relies on this
  to estimate the clock offset);
- ``RL,*`` / ``RL,*,*``: every sample of the current or last measurement (``RL,*,*`` with the
  channels: multichannel analyzers only; a single-channel one answers
  ``Invalid number of parameters``, and power-dev then falls back to ``RL``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from infergy.errors import AnalyzerProtocolError

HELLO_REPLY = "Hello, PTDaemon here!"
STOP_REPLY = "Stopping untimed measurement"
NO_MEASUREMENT_REPLY = "Error: no measurement to stop"
UNKNOWN_REPLY = "Error: unknown command"
INVALID_PARAMETERS_REPLY = "Invalid number of parameters"
PARAMETER_ERROR_REPLY = "Error in parameter"
INVALID_CHANNEL_REPLY = "Invalid channel"
NO_UNREAD_REPLY = "No unread samples"
RANGE_CHANGED_REPLY = {"V": "Range V changed", "A": "Range A changed"}
MAX_SAMPLES = 500_000
DEFAULT_INTERVAL_MS = 1000
NOTSET = "notset"

Quantity = Literal["V", "A"]


@dataclass(frozen=True)
class Hello:
    """``Hello``: the greeting."""


@dataclass(frozen=True)
class Identify:
    """``Identify``: driver, capabilities, version, analyzer identity."""


@dataclass(frozen=True)
class ReadRanges:
    """``RR`` (``RR,*``: the sum group and every channel; ``RR,<ch>``: one channel)."""

    all_channels: bool = False
    channel: int | None = None


@dataclass(frozen=True)
class SetRange:
    """``SR,V|A,<value>|Auto[,<ch>]``; ``value`` None means autorange."""

    quantity: Quantity
    value: float | None
    channel: int | None = None


@dataclass(frozen=True)
class Go:
    """``Go,<ms>,<rampup>[,<mark>]``: start an untimed measurement (0 ms: the default)."""

    interval_ms: int
    rampup: int
    mark: str | None


@dataclass(frozen=True)
class SetMark:
    """``Mark,<mark>``: label the following samples."""

    mark: str


@dataclass(frozen=True)
class Stop:
    """``Stop``: end the measurement."""


@dataclass(frozen=True)
class ReadSamples:
    """The ``RL`` family (see the module docstring)."""

    mode: Literal["unread", "newest", "all"]
    count: int | None = None
    channels: bool = False


@dataclass(frozen=True)
class Watts:
    """``Watts``: summary of the last measurement."""


@dataclass(frozen=True)
class Uncertainty:
    """``Uncertainty`` (``Uncertainty,*``: per channel too)."""

    all_channels: bool = False


@dataclass(frozen=True)
class Latest:
    """``R*``: the latest reading (a liveness check)."""


@dataclass(frozen=True)
class Reset:
    """``Reset``: clear error counters."""


@dataclass(frozen=True)
class Invalid:
    """A request that gets an error reply (the connection stays)."""

    reply: str


Request = (
    Hello | Identify | ReadRanges | SetRange | Go | SetMark | Stop | ReadSamples | Watts
    | Uncertainty | Latest | Reset | Invalid
)  # fmt: skip

_FIXED: dict[str, Request] = {
    "HELLO": Hello(),
    "IDENTIFY": Identify(),
    "STOP": Stop(),
    "WATTS": Watts(),
    "R*": Latest(),
    "RESET": Reset(),
}
_INT_RE = re.compile(r"\d{1,9}")


def parse_request(line: str) -> Request:
    """Parse one request line (its CR/LF may still be there). Never raises."""
    fields = [f.strip() for f in line.strip().split(",")]
    verb = fields[0].upper()
    args = fields[1:]
    if verb in _FIXED:
        return _FIXED[verb] if not args else Invalid(INVALID_PARAMETERS_REPLY)
    parser = {
        "RR": _read_ranges,
        "SR": _set_range,
        "GO": _go,
        "MARK": _mark,
        "RL": _read_samples,
        "DC-RL": _read_samples,
        "UNCERTAINTY": _uncertainty,
    }.get(verb)
    if parser is None:
        return Invalid(UNKNOWN_REPLY)
    return parser(args)


def _channel(text: str) -> int | None:
    if not _INT_RE.fullmatch(text) or int(text) < 1:
        raise ValueError(text)
    return int(text)


def _read_ranges(args: list[str]) -> Request:
    if not args:
        return ReadRanges()
    if len(args) == 1 and args[0] == "*":
        return ReadRanges(all_channels=True)
    try:
        return (
            ReadRanges(channel=_channel(args[0]))
            if len(args) == 1
            else Invalid(INVALID_PARAMETERS_REPLY)
        )
    except ValueError:
        return Invalid(INVALID_CHANNEL_REPLY)


def _set_range(args: list[str]) -> Request:
    if len(args) not in (2, 3) or args[0].upper() not in ("V", "A"):
        return Invalid(INVALID_PARAMETERS_REPLY)
    quantity: Quantity = "V" if args[0].upper() == "V" else "A"
    value: float | None = None
    if args[1].upper() != "AUTO":
        try:
            value = float(args[1])
        except ValueError:
            return Invalid(PARAMETER_ERROR_REPLY)
        if not (math.isfinite(value) and value > 0):
            return Invalid(PARAMETER_ERROR_REPLY)
    try:
        channel = _channel(args[2]) if len(args) == 3 else None
    except ValueError:
        return Invalid(INVALID_CHANNEL_REPLY)
    return SetRange(quantity, value, channel)


def _go(args: list[str]) -> Request:
    if len(args) < 2:
        return Invalid(INVALID_PARAMETERS_REPLY)
    if not (_INT_RE.fullmatch(args[0]) and _INT_RE.fullmatch(args[1])):
        return Invalid(PARAMETER_ERROR_REPLY)
    mark = ",".join(args[2:]) or None
    return Go(int(args[0]) or DEFAULT_INTERVAL_MS, int(args[1]), mark)


def _mark(args: list[str]) -> Request:
    return SetMark(",".join(args)) if args and args[0] else Invalid(INVALID_PARAMETERS_REPLY)


def _read_samples(args: list[str]) -> Request:
    if not args:
        return ReadSamples("unread")
    if args == ["*"]:
        return ReadSamples("all")
    if args == ["*", "*"]:
        return ReadSamples("all", channels=True)
    if len(args) == 1 and _INT_RE.fullmatch(args[0]) and int(args[0]) > 0:
        return ReadSamples("newest", count=int(args[0]))
    return Invalid(INVALID_PARAMETERS_REPLY)


def _uncertainty(args: list[str]) -> Request:
    if not args:
        return Uncertainty()
    return Uncertainty(all_channels=True) if args == ["*"] else Invalid(INVALID_PARAMETERS_REPLY)


# -- replies --------------------------------------------------------------------------------------


def go_reply(interval_ms: int, rampup: int) -> str:
    """The exact reply to ``Go`` (checked byte for byte by MLPerf's checker at 1000 ms)."""
    return (
        f"Starting untimed measurement, maximum {MAX_SAMPLES} samples at {interval_ms}ms "
        f"with {rampup} rampup samples"
    )


def rl_header(count: int) -> str:
    """The first line of an ``RL`` reply."""
    return f"Last {count} samples"


@dataclass(frozen=True)
class RangeGroup:
    """One group of an ``RR`` reply: auto flags 1 on, 0 off, -1 unknown; ranges -1 unknown."""

    amps_auto: int
    amps_range_a: float
    volts_auto: int
    volts_range_v: float


UNKNOWN_RANGES = RangeGroup(-1, -1.0, -1, -1.0)


def ranges_reply(groups: Sequence[RangeGroup]) -> str:
    """``Ranges,<ampAuto>,<ampRange>,<voltAuto>,<voltRange>`` (repeated per group)."""
    parts = [f"{g.amps_auto},{g.amps_range_a:.6f},{g.volts_auto},{g.volts_range_v:.6f}"
             for g in groups]  # fmt: skip
    return "Ranges," + ",".join(parts)


SIMULATED_FIELD = "SIMULATED"
"""The last field of an ``Identify`` reply from a server whose instrument is simulated."""


def identify_reply(
    *,
    driver: str,
    interval_ms: int,
    channels: int,
    version: str,
    os_name: str,
    idn: str,
    cal_date: str = "no_cal_date",
    simulated: bool = False,
) -> str:
    """The ``Identify`` reply: 16+ comma fields (shared/research/ptd.md §1.3).

    Commas inside the OS string and the analyzer identity become ``;`` as PTDaemon writes them.
    A ``simulated`` instrument (an emulator, the dummy device) is said so by a last field,
    :data:`SIMULATED_FIELD`, after the identity: PTDaemon's clients read the driver from field 1
    and the version from ``version=`` (MLCommons power-dev), or keep everything from field 16
    on as one string (SPEC's harness), so it changes nothing for them.
    """
    fields = [driver, str(interval_ms), "1", "1", "1", "1", "0", "0", "1", f"version={version}",
              f"OS={os_name.replace(',', ';')}", "mode=power", "1", "1", str(channels), "0", "0",
              cal_date, idn.strip().replace(",", ";")]  # fmt: skip
    if simulated:
        fields.append(SIMULATED_FIELD)
    return ",".join(fields)


# -- parsing replies (infergy's ptd meter) --------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A parsed ``Identify`` reply.

    Attributes:
        driver: PTDaemon's driver name (``YokogawaWT310``, ``Dummy``...).
        interval_ms: the default averaging interval.
        channels: channels measured.
        version: the ``version=`` field.
        idn: the analyzer's identity (``;`` put back to ``,``).
        raw: the whole reply.
        simulated: the server says its instrument is simulated (:data:`SIMULATED_FIELD`).
    """

    driver: str
    interval_ms: int
    channels: int
    version: str
    idn: str
    raw: str
    simulated: bool = False


def parse_identify(reply: str) -> Identity:
    """Parse ``Identify``'s reply.

    Raises:
        AnalyzerProtocolError: fewer than 16 fields, or they do not parse.
    """
    f = reply.strip().split(",")
    simulated = len(f) > 16 and f[-1] == SIMULATED_FIELD
    if simulated:
        f = f[:-1]
    try:
        if len(f) < 16 or not f[9].startswith("version="):
            raise ValueError(reply)
        mode_at = next(i for i, x in enumerate(f) if x.startswith("mode="))
        channels = int(f[mode_at + 3])
        interval_ms = int(f[1])
    except (ValueError, StopIteration, IndexError) as err:
        msg = f"not a PTDaemon Identify reply: {reply.strip()[:120]!r}"
        raise AnalyzerProtocolError(msg) from err
    idn = ",".join(f[mode_at + 7 :]).replace(";", ",") if len(f) > mode_at + 7 else ""
    version = f[9].removeprefix("version=")
    return Identity(f[0], interval_ms, channels, version, idn, reply, simulated)


def parse_ranges(reply: str) -> list[RangeGroup]:
    """Parse ``Ranges,...`` into its groups of four.

    Raises:
        AnalyzerProtocolError: not a ranges reply.
    """
    f = reply.strip().split(",")
    try:
        if f[0] != "Ranges" or len(f) < 5 or (len(f) - 1) % 4:
            raise ValueError(reply)
        return [RangeGroup(int(float(f[i])), float(f[i + 1]), int(float(f[i + 2])),
                           float(f[i + 3])) for i in range(1, len(f), 4)]  # fmt: skip
    except ValueError as err:
        msg = f"not a PTDaemon ranges reply: {reply.strip()[:120]!r}"
        raise AnalyzerProtocolError(msg) from err


_LAST_RE = re.compile(r"Last (\d+) sample")


def parse_rl_header(reply: str) -> int | None:
    """Samples announced by an ``RL`` header.

    Returns:
        The count; 0 for ``No unread``/``Insufficient unread``; None for anything else.
    """
    m = _LAST_RE.match(reply.strip())
    if m is not None:
        return int(m.group(1))
    return 0 if re.match(r"(No|Insufficient) unread", reply.strip()) else None
