"""Parsers and writers for the real artifacts infergy reads and writes.

Each module handles one family of formats and returns the core types (``Trace``, ``QueryLog``,
``Scenario``) plus a ``problems`` list: a malformed line is counted, skipped and reported, never a
crash. Parsers take text and do no I/O; each format has a thin ``load_*(path)`` wrapper that reads
the file (UTF-8, bad bytes replaced) and raises ``InputError`` (one line and a hint) when it cannot.

- :mod:`infergy.formats.ptd`: PTDaemon's sample/status/console lines (``-l`` logs, ``spl.txt``,
  ``ptd_logs.txt``, ``RL`` replies) and the writers the PTD bridge uses; its timestamps (which
  LoadGen's power_begin/power_end share) in :mod:`infergy.formats.ptd_time`.
- :mod:`infergy.formats.ptd_protocol`: PTDaemon's TCP dialect (requests, exact reply strings,
  reply parsers), the one module both the PTD bridge (server) and the ``ptd`` meter (client) use.
- :mod:`infergy.formats.loadgen`: MLPerf LoadGen's ``mlperf_log_detail.txt`` (window, scenario,
  results, errors) and ``mlperf_log_summary.txt``.
- :mod:`infergy.formats.csv`: infergy's CSV contract for traces (``t_ns,watts_instant`` |
  ``t_ns,watts_mean`` | ``t_ns,joules`` [``,uncertainty``]) and query logs
  (``issue_ns,complete_ns,samples``).

:func:`load_power_source` opens a power recording of either kind, telling them apart by the head.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from infergy.core.trace import F64, I64, Trace
from infergy.errors import InputError
from infergy.formats.common import read_text_file
from infergy.formats.csv import TRACE_HEADERS, parse_trace_csv, trace_csv_simulated_note
from infergy.formats.ptd import PtdLog, looks_like_ptd, parse_ptd_log

__all__ = ["LoadedSource", "load_power_source"]

_HEAD_CHARS = 65_536


@dataclass(frozen=True)
class LoadedSource:
    """A power recording read from a file.

    Attributes:
        trace: the power (or energy counter) trace, invalid samples as NaN.
        format: ``"ptd"`` or ``"csv"``.
        problems: what was skipped or suspicious while reading.
        ptd: the full PTD parse (status lines, channels, marks) when the format is ``ptd``.
        simulated_note: the recording's own SIMULATED note (a PTD ``NOTICE`` line, a CSV
            ``#`` line), None when it does not say it is simulated.
    """

    trace: Trace
    format: str
    problems: list[str] = field(default_factory=list)
    ptd: PtdLog | None = None
    simulated_note: str | None = None

    @property
    def simulated(self) -> bool:
        """Whether the recording says its readings are not measurements."""
        return self.simulated_note is not None

    @property
    def mlperf_samples(self) -> tuple[I64, F64] | None:
        """A PTD log's sample lines as MLPerf's checker reads them: (t_ns, watts) as written.

        Repeated timestamps and every value are kept (the trace keeps one sample per
        timestamp, invalid readings as NaN); None for a CSV trace (its samples are the trace's).
        """
        if self.ptd is None:
            return None
        return self.ptd.t_ns, self.ptd.watts


def _first_line(text: str) -> str:
    for raw in text.removeprefix("\ufeff").split("\n"):
        line = raw.strip()
        if line and not line.startswith("#"):
            return line
    return ""


def load_power_source(path: str | os.PathLike[str]) -> LoadedSource:
    """Read a PTD log or a trace CSV, detected from the file's head.

    A PTD log gives the sum (or only) channel over all marks as an ``interval_mean`` trace; use
    ``LoadedSource.ptd.trace(channel=..., mark=...)`` for another selection.

    Raises:
        InputError: missing or unreadable file, unknown format, or no valid sample in it.
    """
    name = os.fspath(path)
    text = read_text_file(path, "power source file")
    head = text[:_HEAD_CHARS]
    if looks_like_ptd(head):
        ptd = parse_ptd_log(text)
        trace, problems, fmt = ptd.trace(), list(ptd.problems), "ptd"
        note = ptd.simulated_note
    elif _first_line(head).replace(" ", "").lower().startswith("t_ns,"):
        try:
            trace, problems = parse_trace_csv(text)
        except InputError as err:
            msg = f"{name}: {err}"
            raise InputError(msg, hint=err.hint) from err
        ptd, fmt, note = None, "csv", trace_csv_simulated_note(head)
    else:
        accepted = " | ".join(TRACE_HEADERS)
        msg = f"{name}: unknown power source format (first line {_first_line(head)[:60]!r})"
        hint = f"expected a PTDaemon log (Time,MM-DD-YYYY ...) or a CSV with header {accepted}"
        raise InputError(msg, hint=hint)
    if not bool(np.any(trace.valid)):
        detail = f"; {problems[0]}" if problems else ""
        msg = f"{name}: no valid power samples in this {fmt} file{detail}"
        raise InputError(msg, hint="check that the recording covers the run and the analyzer read")
    return LoadedSource(trace=trace, format=fmt, problems=problems, ptd=ptd, simulated_note=note)
