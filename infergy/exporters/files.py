"""Result files: one directory per run, readable without infergy.

Layout under ``[output] dir``::

    <run_id>/result.json                 the result object (pretty, keys in the order given)
    <run_id>/traces/<source>.csv         one per power source (infergy.formats.csv)
    <run_id>/queries.csv.gz              the query log, when there is one: the CSV of
                                         infergy.formats.csv, gzip-compressed (zcat reads it)
    <run_id>/mlperf/<Scenario>/performance/run_1/
        mlperf_log_detail.txt            copied from LoadGen's output, when present
        mlperf_log_summary.txt
        spl.txt                          the analyzer trace as PTDaemon sample lines

Every file is written atomically (a temporary file in the same directory, fsync, rename), so a
reader sees the old file or the new one, never half of one. Run ids and source names are
checked before they become path components.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from infergy.core.trace import QueryLog, Scenario, Semantics, Trace
from infergy.errors import InputError
from infergy.formats.csv import format_queries_csv, format_trace_csv
from infergy.formats.ptd import format_sample_line, format_status_line
from infergy.store.names import check_name

QUERIES_FILE = "queries.csv.gz"
"""The query log's file name in a run's folder (``infergy analyze --queries`` reads it)."""
QUERIES_GZIP_LEVEL = 6
"""7x smaller than the text, 20 ms a 1.6-MB log; level 9 saves 4 % more for 3x the time."""
LOADGEN_LOGS = ("mlperf_log_detail.txt", "mlperf_log_summary.txt")
"""The LoadGen logs copied into the MLPerf layout."""
PTD_NO_READING = -1.0
"""What PTDaemon writes for a quantity it has no valid reading of (volts, amps, PF here)."""

_MLPERF_SCENARIO = {
    Scenario.OFFLINE: "Offline",
    Scenario.SERVER: "Server",
    Scenario.SINGLE_STREAM: "SingleStream",
    Scenario.MULTI_STREAM: "MultiStream",
}
_ANALYZER_SOURCE = re.compile(r"ac(\d*)")


def write_run_files(
    out_dir: Path,
    result: Mapping[str, Any],
    traces: Mapping[str, Trace],
    queries: QueryLog | None,
    loadgen_dir: Path | None = None,
) -> list[Path]:
    """Write a run's files under ``out_dir/<run_id>/`` (layout in the module docstring).

    Args:
        out_dir: the output directory (``[output] dir``); created if missing.
        result: the result object; its ``run_id`` names the directory, its ``scenario`` the
            MLPerf sub-directory.
        traces: power traces by source name (``gpu0``, ``ac``...).
        queries: the query log, or ``None``.
        loadgen_dir: where LoadGen wrote its logs; without logs there, no MLPerf layout.

    Returns:
        The files written, in the order written.

    Raises:
        InputError: an invalid run id, source name or scenario, a result that is not JSON
            (NaN included), or a file that cannot be read or written.
    """
    run_id = check_name("run id", result.get("run_id"))
    sources = {check_name("source name", source, 64): trace for source, trace in traces.items()}
    run_dir = out_dir / run_id
    try:
        text = json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        msg = f"run {run_id}: the result is not writable as JSON: {err}"
        raise InputError(msg, hint="absent figures are None, never NaN") from None
    written = [_write_atomic(run_dir / "result.json", text)]
    notes = {source: _simulated_note(result, source) for source in sources}
    for source, trace in sorted(sources.items()):
        csv = format_trace_csv(trace, note=notes[source])
        written.append(_write_atomic(run_dir / "traces" / f"{source}.csv", csv))
    if queries is not None:  # ~40 bytes a query as text, ~6 compressed (1 M a minute on a GPU)
        data = gzip.compress(format_queries_csv(queries).encode(), QUERIES_GZIP_LEVEL, mtime=0)
        written.append(_write_atomic(run_dir / QUERIES_FILE, data))
    logs = [] if loadgen_dir is None else [loadgen_dir / n for n in LOADGEN_LOGS]
    logs = [log for log in logs if log.is_file()]
    if logs:
        mlperf_dir = run_dir / "mlperf" / _mlperf_scenario(result) / "performance" / "run_1"
        written += [_write_atomic(mlperf_dir / log.name, _read_bytes(log)) for log in logs]
        analyzer = _analyzer_source(sources)
        if analyzer is not None:
            spl = spl_text(sources[analyzer], mark=f"{run_id}_testing", note=notes[analyzer])
            written.append(_write_atomic(mlperf_dir / "spl.txt", spl))
    return written


def write_result_json(out_dir: Path, result: Mapping[str, Any]) -> Path:
    """Write (or replace) only ``out_dir/<run_id>/result.json``; raises like write_run_files."""
    run_id = check_name("run id", result.get("run_id"))
    try:
        text = json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        msg = f"run {run_id}: the result is not writable as JSON: {err}"
        raise InputError(msg, hint="absent figures are None, never NaN") from None
    return _write_atomic(out_dir / run_id / "result.json", text)


def _simulated_note(result: Mapping[str, Any], source: str) -> str | None:
    """The SIMULATED note a simulated source's files carry (read back by ``infergy analyze``)."""
    entry = (result.get("power") or {}).get(source) or {}
    if not entry.get("simulated"):
        return None
    return f"SIMULATED source {source} of run {result.get('run_id')}: not a measurement"


def spl_text(trace: Trace, mark: str, note: str | None = None) -> str:
    """A power trace as PTDaemon ``-l`` log lines (``Time,...,Watts,...,Mark,<mark>``).

    Only watts are known: volts, amps and PF are written as PTD's "no reading" ``-1``, and so
    is an invalid (NaN) watts sample. A ``note`` (the SIMULATED note) is a first ``NOTICE``
    status line, stamped a second before the first sample, outside any measured window.
    """
    no = PTD_NO_READING
    watts = np.where(np.isfinite(trace.values), trace.values, no).tolist()
    lines = [
        format_sample_line(t, w, no, no, no, mark=mark)
        for t, w in zip(trace.t_ns.tolist(), watts, strict=True)
    ]
    if note is not None and lines:
        lines.insert(0, format_status_line(int(trace.t_ns[0]) - 1_000_000_000, "NOTICE", note))
    return "".join(line + "\n" for line in lines)


def _analyzer_source(traces: Mapping[str, Trace]) -> str | None:
    """The wall-power analyzer source: ``ac``, else the lowest-numbered ``acN``; never energy."""
    found = sorted(
        (int(m.group(1) or -1), source)
        for source in traces
        if (m := _ANALYZER_SOURCE.fullmatch(source))
        and traces[source].semantics is not Semantics.COUNTER
    )
    return found[0][1] if found else None


def _mlperf_scenario(result: Mapping[str, Any]) -> str:
    scenario = result.get("scenario")
    if not isinstance(scenario, str):
        msg = f"the result has no scenario (got {scenario!r}): cannot lay out the MLPerf logs"
        raise InputError(msg, hint="set result['scenario'], e.g. 'offline'")
    return _MLPERF_SCENARIO[Scenario.parse(scenario)]


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        msg = f"cannot read {path}: {err.strerror or err}"
        raise InputError(msg, hint="check the LoadGen output directory's permissions") from None


def _write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file, fsync'd, renamed over it."""
    payload = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # os.open with 0o666 honours the umask (mkstemp would force 0o600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except OSError as err:
        msg = f"cannot write {path}: {err.strerror or err}"
        hint = "check that --out (or [output] dir) is a writable directory with space"
        raise InputError(msg, hint=hint) from None
    return path
