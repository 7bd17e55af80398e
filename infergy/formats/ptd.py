"""PTDaemon text formats: timestamps, sample lines, status lines and console lines.

SPEC's PTDaemon (and infergy's bridge, which speaks its dialect) writes samples as label/value
lines with month-first UTC timestamps at millisecond precision, e.g.
``Time,08-14-2023 18:41:36.219,Watts,23.640000,Volts,240.430000,Amps,0.276560,PF,0.355300``.
Variants: the ``-l`` data log and power-dev's ``spl.txt`` append ``,Mark,<mark>``; ``RL`` replies
have no mark; a multichannel analyzer writes the sum first (V/A/PF = -1), then ``Ch<n>,Watts,...``
groups (a raw ``RL,*,*`` reply may leave the ``Ch<n>`` labels out); power-dev's multi-analyzer
merge appends ``Analyzer<n>,<full line>`` groups. Status lines are ``Time,<ts>,<LEVEL>,<text>``;
the console capture (``ptd_logs.txt``) has ``<ts>: <message>`` lines, a banner, ``Buffer was ...``
noise, echoed replies (``Response to client sent: Time,...`` embeds a sample) and bare RL lines.
Bad readings are -1, missed samples -2, Yokogawa's NAN/INF (9.9E+37) may leak through: all of
them, and any W <= 0, are gaps in :meth:`PtdLog.trace`. Sources: shared/research/ptd.md 1.4-1.7;
real excerpts in tests/fixtures/formats/ptd/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from infergy.core.energy import OVERRANGE_W
from infergy.core.trace import F64, I64, Semantics, Trace
from infergy.errors import InputError
from infergy.formats.common import (
    median_spacing_ns,
    order_problems,
    read_text_file,
    simulated_note,
    skipped_problem,
)
from infergy.formats.ptd_time import NS_PER_MS, format_ptd_time, parse_ptd_time

__all__ = [
    "INVALID_ABOVE",
    "NOTSET",
    "NS_PER_MS",
    "STATUS_LEVELS",
    "UNCERTAINTY_WARNING_RE",
    "PtdChannel",
    "PtdLog",
    "PtdStatus",
    "Reading",
    "format_console_line",
    "format_multichannel_sample_line",
    "format_ptd_time",
    "format_sample_line",
    "format_status_line",
    "load_ptd_log",
    "looks_like_ptd",
    "parse_ptd_log",
    "parse_ptd_time",
    "uncertainty_warnings",
]

INVALID_ABOVE = OVERRANGE_W
"""Yokogawa encodes overrange as 9.9E+37 and no data as 9.91E+37: anything this large is invalid."""
STATUS_LEVELS = ("NOTICE", "WARNING", "ERROR")
NOTSET = "notset"

_TS = r"\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2}(?:\.\d{1,9})?"
_CONSOLE_RE = re.compile(rf"^({_TS})(?=[,:])")
_DATEISH_RE = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
_CHANNEL_RE = re.compile(r"Ch\d+")
_ANALYZER_RE = re.compile(r"Analyzer\d+")
_DETECT_RE = re.compile(
    rf"^(?:Time,{_TS},|{_TS}(?:,Watts,|: ))|SPEC PTDaemon|^Selected power meter"
)
_LEVEL_RE = re.compile(r"(NOTICE|WARNING|ERROR):\s*(.*)")
_ECHO = "Response to client sent: "
_GROUP_LABELS = ("Watts", "Volts", "Amps", "PF")

Reading = tuple[float, float, float, float]
"""One channel's (watts, volts, amps, pf) as written."""


@dataclass(frozen=True)
class PtdStatus:
    """A status record: a ``Time,<ts>,<LEVEL>,<text>`` line or a console ``<ts>: <message>`` line.

    Attributes:
        t_ns: when PTD logged it (ns, UTC).
        level: ``NOTICE``, ``WARNING`` or ``ERROR``; ``INFO`` for a console line with no prefix.
        text: the message, without the level prefix.
    """

    t_ns: int
    level: str
    text: str


@dataclass(frozen=True, eq=False)
class PtdChannel:
    """One analyzer channel's readings, aligned with :attr:`PtdLog.t_ns` (NaN where absent)."""

    watts: F64
    volts: F64
    amps: F64
    pf: F64


@dataclass(frozen=True, eq=False)
class PtdLog(PtdChannel):
    """Everything parsed from one PTD-format text, in file order.

    Attributes:
        watts, volts, amps, pf: the sum (or only) channel's values as written (-1, -2, NaN kept).
        t_ns: sample timestamps (ns, UTC), one per sample line, as written (may repeat or go back).
        marks: each sample's mark; ``notset`` when the line has none.
        channels: per-channel readings (``Ch1``..., or ``Analyzer1``... for merged spl.txt).
        status: status and console records.
        problems: one line per kind of defect found (unparseable lines, duplicates, disorder).
        ignored_lines: non-sample lines PTD is known to write (banner, ``Buffer was ...``, replies).
    """

    t_ns: I64
    marks: list[str]
    channels: dict[str, PtdChannel]
    status: list[PtdStatus]
    problems: list[str]
    ignored_lines: int = 0

    def __len__(self) -> int:
        return int(self.t_ns.size)

    def marks_present(self) -> list[str]:
        """The distinct marks, in order of first appearance."""
        return list(dict.fromkeys(self.marks))

    @property
    def simulated_note(self) -> str | None:
        """The log's SIMULATED notice, if it has one (its samples are then not measurements).

        infergy's emulator, PTDaemon's dummy device behind infergy's bridge, and the example
        recordings write one as a ``NOTICE`` status line.
        """
        for s in self.status:
            if s.level == "NOTICE" and (note := simulated_note(s.text)) is not None:
                return note
        return None

    def trace(
        self,
        channel: str | None = None,
        mark: str | None = None,
        nominal_period_ns: int | None = None,
    ) -> Trace:
        """The watts of one channel as an ``interval_mean`` trace with invalid readings as NaN.

        Args:
            channel: ``None`` for the sum (or only) channel, else a key of :attr:`channels`.
            mark: keep only samples with this mark (e.g. ``<session>_testing``).
            nominal_period_ns: the analyzer's update period; default the median spacing rounded
                to the nearest ms (1 s with fewer than two samples).

        Raises:
            InputError: unknown channel or mark.
        """
        if channel is None:
            watts = self.watts
        elif channel in self.channels:
            watts = self.channels[channel].watts
        else:
            have = ", ".join(self.channels) or "none (single channel)"
            msg = f"no channel {channel!r} in this PTD log"
            raise InputError(msg, hint=f"channels present: {have}")
        keep = np.ones(self.t_ns.size, dtype=bool)
        if mark is not None:
            keep = np.array([m == mark for m in self.marks], dtype=bool)
            if not keep.any():
                msg = f"no samples with mark {mark!r} in this PTD log"
                raise InputError(msg, hint=f"marks present: {', '.join(self.marks_present())}")
        t, w = self.t_ns[keep], watts[keep]
        valid = np.isfinite(w) & (w > 0) & (w < INVALID_ABOVE)
        values = np.where(valid, w, np.nan)
        period = nominal_period_ns or median_spacing_ns(t, quantum_ns=NS_PER_MS)
        trace, _ = Trace.from_unsorted(t, values, Semantics.INTERVAL_MEAN, period)
        return trace


class _MalformedError(Exception):
    """A line that looks like PTD output but cannot be parsed (reason in args[0])."""


def _ts(text: str) -> int:
    """:func:`parse_ptd_time` for the line parser: a bad timestamp makes the line malformed."""
    try:
        return parse_ptd_time(text)
    except InputError as err:
        raise _MalformedError(str(err)) from None


def _group(f: list[str], i: int) -> tuple[Reading, int]:
    """Parse ``Watts,<w>,Volts,<v>,Amps,<a>,PF,<pf>`` starting at ``f[i]``."""
    try:
        if tuple(f[i : i + 8 : 2]) != _GROUP_LABELS:
            raise ValueError
        w, v, a, pf = (float(f[i + 2 * k + 1]) for k in range(4))
    except (ValueError, IndexError):
        msg = f"expected Watts,<w>,Volts,<v>,Amps,<a>,PF,<pf>, got {','.join(f[i : i + 8])!r}"
        raise _MalformedError(msg) from None
    return (w, v, a, pf), i + 8


def _sample(f: list[str]) -> tuple[Reading, str | None, dict[str, Reading]]:
    """Parse the fields after the timestamp: the main group, then marks and channel groups."""
    main, i = _group(f, 0)
    mark: str | None = None
    channels: dict[str, Reading] = {}
    while i < len(f):
        label = f[i]
        if label == "Mark" and i + 1 < len(f):
            mark, i = f[i + 1], i + 2
        elif _CHANNEL_RE.fullmatch(label):
            channels[label], i = _group(f, i + 1)
        elif label == "Watts":  # a raw RL,*,* reply: unlabelled channel groups
            channels[f"Ch{len(channels) + 1}"], i = _group(f, i)
        elif _ANALYZER_RE.fullmatch(label) and i + 2 < len(f) and f[i + 1] == "Time":
            _ts(f[i + 2])
            channels[label], i = _group(f, i + 3)
            while i < len(f) and not _ANALYZER_RE.fullmatch(f[i]):
                i += 1  # the analyzer's own mark and channels: not kept
        elif label == "" and i == len(f) - 1:
            break  # a trailing comma
        else:
            msg = f"unexpected field {label!r}"
            raise _MalformedError(msg)
    return main, mark, channels


@dataclass
class _Acc:
    """What one pass over a PTD text collects (local to a parse, never shared)."""

    t_ns: list[int] = field(default_factory=list)
    rows: list[Reading] = field(default_factory=list)
    marks: list[str] = field(default_factory=list)
    line_of: list[int] = field(default_factory=list)
    chans: dict[str, dict[int, Reading]] = field(default_factory=dict)
    status: list[PtdStatus] = field(default_factory=list)
    bad: list[tuple[int, str, str]] = field(default_factory=list)
    ignored: int = 0

    def sample(self, lineno: int, t: int, fields: list[str]) -> None:
        main, mark, channels = _sample(fields)
        for label, reading in channels.items():
            self.chans.setdefault(label, {})[len(self.rows)] = reading
        self.t_ns.append(t)
        self.rows.append(main)
        self.marks.append(mark or NOTSET)
        self.line_of.append(lineno)

    def line(self, lineno: int, line: str) -> None:
        """Classify one stripped, non-empty line; raises _MalformedError."""
        if line.startswith("Time,"):
            f = line.split(",")
            t = _ts(f[1])
            if len(f) > 2 and f[2] in STATUS_LEVELS:
                self.status.append(PtdStatus(t, f[2], ",".join(f[3:])))
            else:
                self.sample(lineno, t, f[2:])
        elif (m := _CONSOLE_RE.match(line)) is not None:
            t = _ts(m.group(1))
            rest = line[m.end() :]
            if rest.startswith(","):  # the console without -l prints samples as <ts>,Watts,...
                self.sample(lineno, t, rest[1:].split(","))
                return
            message = rest[1:].strip()
            lv = _LEVEL_RE.fullmatch(message)
            self.status.append(PtdStatus(t, *(lv.groups() if lv else ("INFO", message))))
            if message.startswith(_ECHO + "Time,"):  # an echoed RL reply embeds a sample
                f = message[len(_ECHO) :].split(",")
                self.sample(lineno, _ts(f[1]), f[2:])
        elif line.startswith("Time") or _DATEISH_RE.match(line):
            msg = "not a PTD sample or status line"
            raise _MalformedError(msg)
        else:
            self.ignored += 1


def _columns(rows: npt.ArrayLike) -> tuple[F64, F64, F64, F64]:
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(), arr[:, 3].copy()


def parse_ptd_log(text: str) -> PtdLog:
    """Parse any PTD-format text: ``-l`` logs, ``spl.txt``, ``ptd_logs.txt``, ``RL`` replies.

    Never raises on content: malformed lines are counted, skipped and reported in ``problems``.
    """
    acc = _Acc()
    for lineno, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = raw.strip()
        if line:
            try:
                acc.line(lineno, line)
            except _MalformedError as err:
                acc.bad.append((lineno, line, str(err)))
    t_ns = np.asarray(acc.t_ns, dtype=np.int64)
    channels: dict[str, PtdChannel] = {}
    for label, by_row in acc.chans.items():
        c = np.full((len(acc.rows), 4), np.nan)
        c[list(by_row)] = list(by_row.values())
        channels[label] = PtdChannel(*_columns(c))
    return PtdLog(
        *_columns(acc.rows),  # watts, volts, amps, pf of the sum (or only) channel
        t_ns=t_ns,
        marks=acc.marks,
        channels=channels,
        status=acc.status,
        problems=_problems(acc.bad, t_ns, acc.line_of),
        ignored_lines=acc.ignored,
    )


def _problems(bad: list[tuple[int, str, str]], t_ns: I64, line_of: list[int]) -> list[str]:
    problems = [skipped_problem(len(bad), *bad[0])] if bad else []
    day_first = sum("day first" in why for _, _, why in bad)
    if day_first:
        problems.append(
            f"{day_first} of them carry a day-first timestamp (DD-MM-YYYY); PTD writes "
            "MM-DD-YYYY, so other dates in this file may be misread too"
        )
    if t_ns.size == 0:
        problems.append("no sample lines found")
    return problems + order_problems(t_ns, line_of)


UNCERTAINTY_WARNING_RE = re.compile(
    r"Uncertainty \d+.\d+%, which is above 1.00% limit for the last sample!"
)
"""PTDaemon's warning that a sample's uncertainty exceeds MLPerf's 1 % (power_checker.py makes
it an error during the testing phase)."""


def uncertainty_warnings(log: PtdLog, start_ns: int, end_ns: int) -> list[PtdStatus]:
    """PTD's over-1 % uncertainty warnings strictly inside ``(start_ns, end_ns)``.

    MLPerf's Power WG checker fails a run with one during its testing phase. (Its own test
    compares epoch seconds with a tolerance meant as 800 ms but applied as 800 s, so in practice
    it looks at nothing in a ~600-s run; this checks the whole window.)
    """
    return [
        st
        for st in log.status
        if st.level == "WARNING"
        and start_ns < st.t_ns < end_ns
        and UNCERTAINTY_WARNING_RE.search(st.text)
    ]


def looks_like_ptd(text_head: str) -> bool:
    """Whether the start of a file looks like PTD output (a sample, status or console line)."""
    lines = text_head.removeprefix("\ufeff").split("\n")[:200]
    return any(_DETECT_RE.search(line.strip()) for line in lines)


def load_ptd_log(path: str | os.PathLike[str]) -> PtdLog:
    """Read and parse a PTD log file (see :func:`parse_ptd_log`)."""
    return parse_ptd_log(read_text_file(path, "PTD log"))


def _group_text(w: float, v: float, a: float, pf: float) -> str:
    return f"Watts,{w:.6f},Volts,{v:.6f},Amps,{a:.6f},PF,{pf:.6f}"


def format_sample_line(
    t_ns: int, watts: float, volts: float, amps: float, pf: float, *, mark: str | None = None
) -> str:
    """One sample line, without a line ending: ``Time,<ts>,Watts,<w>,...,PF,<pf>[,Mark,<mark>]``.

    Values are written with 6 decimals as PTD does (``24.300000``); ``mark=None`` gives the
    ``RL`` reply form, a mark the ``-l`` log form.
    """
    line = f"Time,{format_ptd_time(t_ns)},{_group_text(watts, volts, amps, pf)}"
    return line if mark is None else f"{line},Mark,{mark}"


def format_multichannel_sample_line(
    t_ns: int,
    channels: Mapping[int, Reading] | Sequence[Reading],
    mark: str | None = None,
    total_watts: float | None = None,
) -> str:
    """A multichannel sample line: the sum (V/A/PF -1), the mark if any, then ``Ch<n>`` groups.

    Args:
        t_ns: sample time (ns, UTC).
        channels: (watts, volts, amps, pf) keyed by channel number, or a sequence for 1, 2, ...
        mark: the ``Mark`` value, or ``None`` for the ``RL`` reply form.
        total_watts: default the sum of the channels' watts, or -1 (a bad reading) when any of
            them is negative or not finite.
    """
    by_number = dict(channels) if isinstance(channels, Mapping) else dict(enumerate(channels, 1))
    if total_watts is None:
        ws = [r[0] for r in by_number.values()]
        total_watts = float(sum(ws)) if all(np.isfinite(w) and w >= 0 for w in ws) else -1.0
    line = format_sample_line(t_ns, total_watts, -1.0, -1.0, -1.0, mark=mark)
    groups = (f"Ch{n},{_group_text(*r)}" for n, r in sorted(by_number.items()))
    return ",".join((line, *groups))


def format_status_line(t_ns: int, level: str, text: str) -> str:
    """A ``-l`` log status line ``Time,<ts>,<LEVEL>,<text>`` (level NOTICE, WARNING or ERROR)."""
    if level not in STATUS_LEVELS:
        msg = f"unknown PTD status level {level!r} (choose one of: {', '.join(STATUS_LEVELS)})"
        raise InputError(msg)
    return f"Time,{format_ptd_time(t_ns)},{level},{text}"


def format_console_line(t_ns: int, message: str) -> str:
    """A console line ``<ts>: <message>`` (prefix the message with ``ERROR: ``/``WARNING: ``)."""
    return f"{format_ptd_time(t_ns)}: {message}"
