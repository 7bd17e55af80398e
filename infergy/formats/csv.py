"""infergy's CSV contract for power traces and query logs (what users and other tools exchange).

A trace CSV has a header naming the time column and the values' semantics, and one sample per
row; an optional ``uncertainty`` column holds each sample's relative uncertainty (a fraction)::

    t_ns,watts_instant   -> Semantics.INSTANT        (power at t, W)
    t_ns,watts_mean      -> Semantics.INTERVAL_MEAN  (mean power over the interval ending at t)
    t_ns,joules          -> Semantics.COUNTER        (cumulative energy, J)

A query log CSV is ``issue_ns,complete_ns,samples``. Times are int64 ns since the Unix epoch
(UTC). An empty or ``nan`` value is an invalid sample (NaN); unparseable rows are counted,
skipped and reported. A clean file goes through numpy's C parser in one piece; in a dirty one
the well-formed lines still do and only the others are read one by one (1.5 M rows: about 1.5 s
clean, 4 s dirty on a small VM).

"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from collections.abc import Callable
from itertools import compress

import numpy as np
import numpy.typing as npt

from infergy.core.trace import QueryLog, Semantics, Trace
from infergy.errors import InputError
from infergy.formats.common import (
    median_spacing_ns,
    order_problems,
    read_text_file,
    simulated_note,
    skipped_problem,
)

TRACE_HEADERS: dict[str, Semantics] = {
    "t_ns,watts_instant": Semantics.INSTANT,
    "t_ns,watts_mean": Semantics.INTERVAL_MEAN,
    "t_ns,joules": Semantics.COUNTER,
}
QUERIES_HEADER = "issue_ns,complete_ns,samples"
UNCERTAINTY_COLUMN = "uncertainty"

Columns = list[npt.NDArray[np.generic]]
_INT = r"[ \t]*[-+]?\d+[ \t]*"
_FLOAT = r"[ \t]*[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|(?i:nan|inf|infinity))[ \t]*"


def _split_header(text: str) -> tuple[str, str, int]:
    """The normalised header, the body after it, and the header's line number (1-based)."""
    text = text.removeprefix("\ufeff")
    pos, lineno = 0, 0
    while pos <= len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        lineno += 1
        line = text[pos:end].strip()
        if line and not line.startswith("#"):
            header = ",".join(c.strip().lower() for c in line.split(","))
            return header, text[end + 1 :], lineno
        pos = end + 1
    return "", "", lineno


def _fast(body: str, kinds: str) -> Columns | None:
    """Parse with numpy's C parser; ``None`` when a row is dirty (then go line by line)."""
    dtype = [(f"c{i}", np.int64 if k == "i" else np.float64) for i, k in enumerate(kinds)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data" for an empty body
            arr = np.loadtxt(io.StringIO(body), delimiter=",", dtype=dtype, ndmin=1, comments="#")
    except (ValueError, OverflowError):
        return None
    return [arr[f"c{i}"].copy() for i in range(len(kinds))]


def _float_or_nan(text: str) -> float:
    s = text.strip()
    return math.nan if not s or s.lower() == "nan" else float(s)


def _careful(
    lines: list[str], index: list[int], kinds: str, first_lineno: int
) -> tuple[Columns, list[int], list[tuple[int, str]]]:
    """Parse ``lines`` (at ``index`` in the body) one by one; return columns, kept index, bad."""
    conv: list[Callable[[str], float | int]] = [int if k == "i" else _float_or_nan for k in kinds]
    rows: list[list[float | int]] = []
    kept: list[int] = []
    bad: list[tuple[int, str]] = []
    for i, raw in zip(index, lines, strict=True):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(",")
        try:
            if len(parts) != len(kinds):
                raise ValueError
            rows.append([c(p) for c, p in zip(conv, parts, strict=True)])
            kept.append(i)
        except (ValueError, OverflowError):
            bad.append((first_lineno + i, line))
    cols: Columns = [
        np.asarray([r[j] for r in rows], dtype=np.int64 if k == "i" else np.float64)
        for j, k in enumerate(kinds)
    ]
    return cols, kept, bad


def _row_lines(body: str, first_lineno: int) -> list[int]:
    """The file line of each data row of a body that parsed whole (blank and # lines hold none)."""
    lines = (raw.strip() for raw in body.split("\n"))
    return [first_lineno + i for i, line in enumerate(lines) if line and not line.startswith("#")]


def _columns(body: str, kinds: str, header_lineno: int) -> tuple[Columns, list[str], list[int]]:
    """Whole body through numpy if clean; else clean lines through numpy, the rest one by one.

    Returns:
        The columns, the problems, and each row's line number in the file.
    """
    fast = _fast(body, kinds)
    if fast is not None:
        return fast, [], _row_lines(body, header_lineno + 1)
    lines = body.split("\n")
    clean_re = re.compile(",".join(_INT if k == "i" else _FLOAT for k in kinds) + r"\r?")
    clean = [clean_re.fullmatch(line) is not None for line in lines]
    parsed = _fast("\n".join(compress(lines, clean)), kinds)
    if parsed is None:  # e.g. an int64 overflow: everything goes the slow way
        clean = [False] * len(lines)
        parsed = [np.empty(0, dtype=np.int64 if k == "i" else np.float64) for k in kinds]
    dirty = [i for i, ok in enumerate(clean) if not ok]
    cols, kept, bad = _careful([lines[i] for i in dirty], dirty, kinds, header_lineno + 1)
    index = np.concatenate([np.flatnonzero(clean), np.asarray(kept, dtype=np.int64)])
    order = np.argsort(index, kind="stable")
    merged = [np.concatenate([a, b])[order] for a, b in zip(parsed, cols, strict=True)]
    problems = [skipped_problem(len(bad), *bad[0])] if bad else []
    return merged, problems, (index[order] + header_lineno + 1).tolist()


def parse_trace_csv(text: str, nominal_period_ns: int | None = None) -> tuple[Trace, list[str]]:
    """Parse a trace CSV (see the module docstring).

    Args:
        text: the whole file.
        nominal_period_ns: the source's update period; default the median sample spacing
            (1 s with fewer than two samples).

    Returns:
        The trace (sorted; a repeated timestamp keeps its last row) and the problems found.

    Raises:
        InputError: the header is not one of the accepted ones.
    """
    header, body, header_lineno = _split_header(text)
    base, _, extra = header.partition(f",{UNCERTAINTY_COLUMN}")
    if base not in TRACE_HEADERS or extra:
        accepted = " | ".join(TRACE_HEADERS)
        msg = f"unknown trace CSV header {header!r}"
        raise InputError(msg, hint=f"accepted: {accepted} (each optionally with ,uncertainty)")
    with_u = header.endswith(f",{UNCERTAINTY_COLUMN}")
    cols, problems, line_of = _columns(body, "iff" if with_u else "if", header_lineno)
    t = cols[0].astype(np.int64, copy=False)
    if nominal_period_ns is None:
        nominal_period_ns = median_spacing_ns(t)
    trace, _ = Trace.from_unsorted(
        t, cols[1], TRACE_HEADERS[base], nominal_period_ns, cols[2] if with_u else None
    )
    problems += order_problems(t, line_of)
    if len(trace) == 0:
        problems.append("no samples found")
    return trace, problems


def parse_queries_csv(text: str) -> tuple[QueryLog, list[str]]:
    """Parse a query log CSV ``issue_ns,complete_ns,samples``.

    Rows completing before they are issued, or carrying fewer than one sample, are skipped and
    reported like unparseable ones.

    Raises:
        InputError: the header is not ``issue_ns,complete_ns,samples``.
    """
    header, body, header_lineno = _split_header(text)
    if header != QUERIES_HEADER:
        msg = f"unknown query log CSV header {header!r}"
        raise InputError(msg, hint=f"accepted: {QUERIES_HEADER}")
    cols, problems, line_of = _columns(body, "iii", header_lineno)
    issue, complete, samples = (c.astype(np.int64, copy=False) for c in cols)
    ok = (complete >= issue) & (samples >= 1)
    if not ok.all():
        n_bad = int(np.count_nonzero(~ok))
        problems.append(
            f"{n_bad} queries skipped: completion before issue or fewer than one sample "
            f"(first at line {line_of[int(np.argmin(ok))]})"
        )
        issue, complete, samples = issue[ok], complete[ok], samples[ok]
    if issue.size == 0:
        problems.append("no queries found")
    return QueryLog(issue, complete, samples), problems


def _wrap(path: str | os.PathLike[str], err: InputError) -> InputError:
    return InputError(f"{os.fspath(path)}: {err}", hint=err.hint)


def load_trace_csv(
    path: str | os.PathLike[str], nominal_period_ns: int | None = None
) -> tuple[Trace, list[str]]:
    """Read and parse a trace CSV file (see :func:`parse_trace_csv`)."""
    text = read_text_file(path, "trace CSV")
    try:
        return parse_trace_csv(text, nominal_period_ns)
    except InputError as err:
        raise _wrap(path, err) from err


def load_queries_csv(path: str | os.PathLike[str]) -> tuple[QueryLog, list[str]]:
    """Read and parse a query log CSV file (see :func:`parse_queries_csv`)."""
    text = read_text_file(path, "query log CSV")
    try:
        return parse_queries_csv(text)
    except InputError as err:
        raise _wrap(path, err) from err


def _float_text(values: npt.NDArray[np.float64]) -> list[str]:
    return [repr(v) for v in values.tolist()]  # shortest text that reads back to the same float


def format_trace_csv(trace: Trace, *, note: str | None = None) -> str:
    """Write a trace as CSV; :func:`parse_trace_csv` reads back the same t_ns, values and u.

    NaN is written as ``nan``. The nominal period is not stored (it is re-derived on reading).
    ``note`` becomes a ``#`` line before the header (a SIMULATED note is read back by
    :func:`trace_csv_note`).
    """
    header = next(h for h, sem in TRACE_HEADERS.items() if sem is trace.semantics)
    cols = [[str(t) for t in trace.t_ns.tolist()], _float_text(trace.values)]
    if trace.uncertainty is not None:
        header += f",{UNCERTAINTY_COLUMN}"
        cols.append(_float_text(trace.uncertainty))
    head = "".join(f"# {line}\n" for line in (note or "").splitlines() if line.strip())
    return head + header + "\n" + "".join(",".join(row) + "\n" for row in zip(*cols, strict=True))


def trace_csv_simulated_note(text: str) -> str | None:
    """The SIMULATED note among the ``#`` lines before a trace CSV's header, if any."""
    for raw in text.removeprefix("\ufeff").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("#"):
            return None  # the header: notes come before it
        if (note := simulated_note(line.lstrip("#"))) is not None:
            return note
    return None


def format_queries_csv(queries: QueryLog) -> str:
    """Write a query log as CSV (``issue_ns,complete_ns,samples``), exactly as it reads back."""
    rows = zip(
        queries.issue_ns.tolist(),
        queries.complete_ns.tolist(),
        queries.samples.tolist(),
        strict=True,
    )
    return QUERIES_HEADER + "\n" + "".join(f"{i},{c},{s}\n" for i, c, s in rows)
