"""Helpers every format shares: reading text files (gzip too), spacing, problem wording.

The problem reports keep the same wording in every parser ("3 unparseable lines skipped (first
at line 17: ...)"), so users see one style whatever file they gave.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from infergy.core.trace import NS_PER_S
from infergy.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"

SIMULATED_MARK = "SIMULATED"
"""How a recording says it is not a measurement: a note that starts with this word (a PTD log's
NOTICE status line, a ``#`` comment line of a trace CSV). Readers keep the mark in the result."""


def simulated_note(text: str) -> str | None:
    """``text`` if it is a SIMULATED note (starts with the word ``SIMULATED``), else None."""
    note = text.strip()
    word = note.split(None, 1)[0].rstrip(":,.;") if note else ""
    return note if word == SIMULATED_MARK else None


def read_text_file(path: str | os.PathLike[str], what: str) -> str:
    """Read a text file as UTF-8, bad bytes replaced: the I/O shared by every ``load_*``.

    A gzip-compressed file (``queries.csv.gz``, known by its first bytes, whatever its name)
    is decompressed.

    Raises:
        InputError: the file is missing, a directory, unreadable, or broken gzip (one line
            plus a hint).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        why = {FileNotFoundError: "no such file", IsADirectoryError: "it is a directory"}
        msg = f"cannot read {what} {os.fspath(path)}: {why.get(type(err), err.strerror or err)}"
        hint = "check the path (relative to the current directory) and its permissions"
        raise InputError(msg, hint=hint) from None
    if data.startswith(GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            msg = f"cannot read {what} {os.fspath(path)}: broken gzip data: {err}"
            raise InputError(msg, hint="the file is truncated or damaged") from None
    return data.decode("utf-8", errors="replace")


def median_spacing_ns(t_ns: npt.NDArray[np.int64], quantum_ns: int = 1) -> int:
    """The median spacing of distinct timestamps, rounded to ``quantum_ns`` (1 s if undefined)."""
    d = np.diff(t_ns)
    if not bool(np.all(d > 0)):  # not strictly increasing: sort and drop repeats (no np.unique:
        d = np.diff(np.sort(t_ns))  # numpy 2.3+ hashes there, 15x slower on a large trace)
        d = d[d > 0]
    if d.size == 0:
        return NS_PER_S
    period = round(float(np.median(d)) / quantum_ns) * quantum_ns
    return period if period > 0 else NS_PER_S


def skipped_problem(count: int, lineno: int, line: str, why: str = "") -> str:
    """The report on skipped lines: ``3 unparseable lines skipped (first at line 17: 'x')``."""
    snippet = line if len(line) <= 80 else line[:77] + "..."
    noun = "line" if count == 1 else "lines"
    reason = f": {why}" if why else ""
    return f"{count} unparseable {noun} skipped (first at line {lineno}: {snippet!r}{reason})"


def order_problems(t_ns: npt.NDArray[np.int64], line_of: list[int] | None = None) -> list[str]:
    """Report repeated and backward timestamps (``line_of`` maps sample index to file line)."""
    problems: list[str] = []
    if bool(np.all(np.diff(t_ns) > 0)):
        return problems
    order = np.argsort(t_ns, kind="stable")  # equal timestamps keep their file order
    repeat = np.zeros(t_ns.size, dtype=bool)
    repeat[order[1:]] = t_ns[order[1:]] == t_ns[order[:-1]]  # not the first at its timestamp
    dups = int(np.count_nonzero(repeat))
    if dups:
        i = int(np.argmax(repeat))
        where = f"line {line_of[i]}" if line_of is not None else f"data row {i + 1}"
        problems.append(
            f"{dups} sample{'s' * (dups != 1)} at an already seen timestamp (first at {where}); "
            "the last one at each timestamp is used"
        )
    back = int(np.count_nonzero(np.diff(t_ns) < 0))
    if back:
        problems.append(f"timestamps go backwards at {back} place{'s' * (back != 1)}; sorted")
    return problems
