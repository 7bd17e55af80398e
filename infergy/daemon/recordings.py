"""``infergy analyze``: recorded artifacts in, one analysed result out.

Reads power recordings (PTD logs, CSV traces), the run's query log and/or LoadGen's logs,
settles the window and the workload, and hands everything to :func:`infergy.core.analyze`.
A PTD log plus the LoadGen logs of a real MLPerf run is enough; a query log adds per-query
energy and infergy's own latency figures.
"""

from __future__ import annotations

import hashlib
import platform
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from infergy import __version__
from infergy.config.settings import Settings
from infergy.core.analysis import analyze
from infergy.core.clock import OffsetEstimate
from infergy.core.inputs import AnalysisOptions, SourceInput, Workload, pair_samples
from infergy.core.mlperf import INFERABLE
from infergy.core.trace import NS_PER_S, QueryLog, Scenario, Trace, Window
from infergy.daemon.submission import submission_checks, testing_dir
from infergy.errors import InputError
from infergy.formats import load_power_source
from infergy.formats.csv import load_queries_csv
from infergy.formats.loadgen import LoadgenDetail, load_loadgen_detail
from infergy.formats.ptd import PtdLog, uncertainty_warnings
from infergy.store.names import new_run_id

T = TypeVar("T")
_SOURCE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}(\.samples)?")
_KINDS = (
    (re.compile(r"gpu\d+"), "nvml"),
    (re.compile(r"gpu\d+\.samples"), "nvml"),
    (re.compile(r"ac\d*"), "analyzer"),
    (re.compile(r"cpu\d*"), "rapl"),
    (re.compile(r"sim\d*"), "sim"),
)
_KIND_HINT = (
    "name it by its kind: gpu0, gpu1... (NVML; gpu0.samples: gpu0's 20-ms power samples, which "
    "anchor its energy counter), ac, ac1... (analyzer), cpu (RAPL), sim (gpus, the GPUs' sum, "
    "is added by the analysis)"
)
IDLE_GUARD_NS = 1_000_000_000
"""``--idle-before`` ends this long before the window, so the load's ramp is not counted."""
WINDOW_TOLERANCE_NS = 5_000_000
"""LoadGen's window and the query log's may differ by this much before it is a problem."""


@dataclass(frozen=True)
class AnalyzeRequest:
    """The arguments of ``infergy analyze`` (raw ``SOURCE=VALUE`` strings are parsed here)."""

    power: Sequence[str]
    queries: Path | None = None
    loadgen_log: Path | None = None
    scenario: str | None = None
    idle_watts: Sequence[str] = ()
    clock_offset_ms: Sequence[str] = ()
    align_auto: bool = False
    idle_before_s: float | None = None


@dataclass(frozen=True)
class RecordedAnalysis:
    """The result, and what the store and the files exporter keep beside it."""

    result: dict[str, Any]
    traces: dict[str, Trace]
    queries: QueryLog | None
    loadgen_dir: Path | None


def source_kind(name: str) -> str:
    """The kind a source name stands for (ARCHITECTURE.md, stable source names)."""
    for pattern, kind in _KINDS:
        if pattern.fullmatch(name):
            return kind
    return "replay"


def analyze_recordings(
    req: AnalyzeRequest, settings: Settings, *, run_id: str | None = None
) -> RecordedAnalysis:
    """Load the recordings named in ``req`` and analyse them.

    Raises:
        InputError: a missing or unusable file, a malformed ``SOURCE=VALUE``, or not enough
            to form a window (neither a query log nor LoadGen's power_begin/power_end).
        AnalysisError: nothing covers the window.
    """
    paths = _pairs(req.power, "--power", Path)
    if not paths:
        msg = "no power source given"
        raise InputError(msg, hint="add --power SOURCE=PATH, e.g. --power ac=run_1/spl.txt")
    _check_kinds(paths)
    idle = _pairs(req.idle_watts, "--idle-watts", _float("watts", minimum=0.0))
    offsets = _pairs(req.clock_offset_ms, "--clock-offset-ms", _float("milliseconds"))
    for opt, given in (("--idle-watts", idle), ("--clock-offset-ms", offsets)):
        for name in given:
            if name not in paths:
                msg = f"{opt} names source {name!r}, which no --power gives"
                raise InputError(msg, hint=f"sources given: {', '.join(paths)}")
    if req.queries is None and req.loadgen_log is None:
        msg = "the window is unknown: give --queries or --loadgen-log"
        raise InputError(msg, hint="LoadGen's mlperf_log_detail.txt carries power_begin/power_end")

    problems: list[str] = []
    sources, inputs, ptd_logs = _load_sources(paths, offsets, idle, problems)

    detail = load_loadgen_detail(req.loadgen_log) if req.loadgen_log is not None else None
    queries = None
    if req.queries is not None:
        queries, q_problems = load_queries_csv(req.queries)
        problems.extend(f"queries: {p}" for p in q_problems)
        inputs["queries"] = {"path": str(req.queries), "sha256": _sha256(req.queries)}
    if detail is not None:
        problems.extend(f"loadgen: {p}" for p in detail.problems)
        problems.extend(f"loadgen error: {e}" for e in detail.errors)
    scenario = _scenario(req.scenario, detail, problems)
    window = _window(detail, queries, problems)
    workload = _workload(scenario, detail, queries)
    invalid = _checker_problems(ptd_logs, window, detail, problems)

    idle_window = None
    if req.idle_before_s is not None:
        if not req.idle_before_s > 0:
            msg = f"--idle-before must be a positive number of seconds, got {req.idle_before_s}"
            raise InputError(msg)
        end = window.start_ns - IDLE_GUARD_NS
        idle_window = Window(end - round(req.idle_before_s * NS_PER_S), end)
    rid = run_id or new_run_id()
    provenance = {
        "infergy_version": __version__,
        "command": "analyze",
        "config": settings.dump_masked(),
        "software": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "loadgen": detail.version if detail is not None else None,
        },
        "inputs": inputs,
        "gpus": [],
    }
    analysis = analyze(
        sources,
        workload,
        window,
        identity={"run_id": rid, "provenance": provenance},
        options=AnalysisOptions(
            gap_factor=settings.analysis.gap_factor,
            degraded_coverage=settings.analysis.degraded_coverage,
            align_auto=req.align_auto,
            align_max_lag_s=settings.analysis.align_max_lag_s,
            idle_window=idle_window,
        ),
        problems=problems,
    )
    result = analysis.result
    if req.loadgen_log is not None and (run_1 := testing_dir(req.loadgen_log)) is not None:
        invalid |= _submission(result, run_1, paths)
    if invalid and result["status"] == "ok":
        result["status"] = "degraded"  # not a valid MLPerf result: never "ok"
    loadgen_dir = None
    if req.loadgen_log is not None:
        loadgen_dir = req.loadgen_log if req.loadgen_log.is_dir() else req.loadgen_log.parent
    return RecordedAnalysis(analysis.result, analysis.traces, queries, loadgen_dir)


def _check_kinds(paths: dict[str, Path]) -> None:
    """A recording is only known by its name: one that names no kind is refused."""
    for name in paths:
        if source_kind(name) == "replay":
            msg = f"--power: source name {name!r} names no kind of power source"
            raise InputError(msg, hint=_KIND_HINT)


def _submission(result: dict[str, Any], run_1: Path, paths: dict[str, Path]) -> bool:
    """The checks beside a ``performance/run_1`` folder; True when the power checker fails."""
    name = next((n for n, p in paths.items() if p.resolve().parent == run_1), None)
    testing_w = result["power"][name]["mlperf_average_watts"] if name is not None else None
    extra: list[str] = []
    entry = submission_checks(run_1, paths.get(name) if name else None, testing_w, extra)
    result["mlperf"]["submission"] = entry
    result["problems"].extend(extra)
    return entry["ranging"] is not None and not entry["ranging"]["ok"]


def _load_sources(
    paths: dict[str, Path],
    offsets: dict[str, float],
    idle: dict[str, float],
    problems: list[str],
) -> tuple[list[SourceInput], dict[str, Any], dict[str, PtdLog]]:
    """The power sources, their provenance, and the PTD logs among them (for their status)."""
    sources, inputs, ptd_logs = [], {}, {}
    for name, path in paths.items():
        loaded = load_power_source(path)
        problems.extend(f"{name}: {p}" for p in loaded.problems)
        kind = source_kind(name)
        if loaded.simulated_note is not None:  # the recording says so: the result says so too
            problems.append(f"{name}: SIMULATED (the recording says: {loaded.simulated_note})")
        elif kind == "sim":
            problems.append(f"{name}: SIMULATED (a sim source, by its name); not a measurement")
        off = offsets.get(name)
        sources.append(
            SourceInput(
                name=name,
                kind=kind,
                trace=loaded.trace,
                offset=None if off is None else OffsetEstimate(round(off * 1e6), 0, "given"),
                idle_w=idle.get(name),
                mlperf_samples=loaded.mlperf_samples,
                simulated=loaded.simulated or kind == "sim",
            )
        )
        if loaded.ptd is not None:
            ptd_logs[name] = loaded.ptd
        inputs[name] = {"path": str(path), "format": loaded.format, "sha256": _sha256(path)}
    return pair_samples(sources), inputs, ptd_logs


def _checker_problems(
    ptd_logs: dict[str, PtdLog],
    window: Window,
    detail: LoadgenDetail | None,
    problems: list[str],
) -> bool:
    """MLPerf's checks beyond the figures: PTD's uncertainty warnings, LoadGen's verdict.

    Returns whether LoadGen says INVALID (the result is then never ``ok``).
    """
    for name, log in ptd_logs.items():
        for st in uncertainty_warnings(log, window.start_ns, window.end_ns)[:1]:
            problems.append(
                f"{name}: PTD warned inside the window that a sample's uncertainty is above "
                f"MLPerf's 1 % ({st.text.strip()}); MLPerf's power checker fails such a run"
            )
    run = detail.mlperf_run() if detail is not None else None
    if detail is None or run is None or run.validity != "INVALID":
        return False
    problems.append(f"LoadGen result INVALID: {detail.invalid_reason()}")
    return True


def _scenario(given: str | None, detail: LoadgenDetail | None, problems: list[str]) -> Scenario:
    lg = detail.scenario if detail is not None else None
    if given is None:
        if lg is None:
            msg = "the scenario is unknown: give --scenario"
            raise InputError(msg, hint="offline | server | single-stream | multi-stream")
        return lg
    try:
        scenario = Scenario.parse(given)
    except InputError as e:
        raise InputError(str(e), hint="e.g. --scenario single-stream") from None
    if lg is not None and lg is not scenario and (lg, scenario) not in INFERABLE:
        problems.append(
            f"--scenario {scenario.value} overrides LoadGen's {lg.value}; MLPerf infers "
            "no such result"
        )
    return scenario


def _window(detail: LoadgenDetail | None, queries: QueryLog | None, problems: list[str]) -> Window:
    q_win = Window.of_queries(queries) if queries is not None and len(queries) else None
    if detail is not None and detail.power_begin_ns is not None and detail.power_end_ns is not None:
        lg_win = Window(detail.power_begin_ns, detail.power_end_ns)
        if q_win is not None:
            d0 = (q_win.start_ns - lg_win.start_ns) / 1e6
            d1 = (q_win.end_ns - lg_win.end_ns) / 1e6
            if max(abs(d0), abs(d1)) * 1e6 > WINDOW_TOLERANCE_NS:
                problems.append(
                    f"LoadGen's window and the query log's differ by {d0:+.1f} ms at the start "
                    f"and {d1:+.1f} ms at the end (LoadGen's is used)"
                )
        return lg_win
    if detail is not None:
        if q_win is None:
            msg = "the LoadGen log has no power_begin/power_end, and no --queries was given"
            raise InputError(msg, hint="give the run's query log with --queries")
        problems.append("LoadGen log has no power_begin/power_end: window from the query log")
    if q_win is None:
        msg = "the query log is empty: no window can be formed"
        raise InputError(msg, hint="check the --queries file")
    return q_win


def _workload(
    scenario: Scenario, detail: LoadgenDetail | None, queries: QueryLog | None
) -> Workload:
    run = detail.mlperf_run() if detail is not None else None
    if queries is not None:
        return Workload.of_queries(scenario, queries, run)
    assert detail is not None  # _window() guarantees one of the two
    count = detail.result_query_count
    if count is None:
        msg = "the LoadGen log has no result_query_count and no --queries was given"
        raise InputError(msg, hint="give the run's query log with --queries")
    samples = run.sample_count if run is not None else None
    return Workload.of_counts(scenario, count, detail.latency_percentiles_ns, samples, run)


def _pairs(items: Sequence[str], opt: str, convert: Callable[[str], T]) -> dict[str, T]:
    out: dict[str, T] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not value:
            msg = f"{opt} expects SOURCE=VALUE, got {item!r}"
            raise InputError(msg, hint=f"e.g. {opt} ac=...")
        if not _SOURCE_NAME.fullmatch(name):
            msg = f"{opt}: bad source name {name!r}"
            hint = "lower-case letters, digits and _; e.g. gpu0, gpu0.samples, ac, cpu"
            raise InputError(msg, hint=hint)
        if name in out:
            msg = f"{opt} gives source {name!r} twice"
            raise InputError(msg)
        try:
            out[name] = convert(value.strip())
        except InputError as err:
            msg = f"{opt} {item!r}: {err}"
            raise InputError(msg, hint=err.hint) from None
    return out


def _float(unit: str, minimum: float | None = None) -> Callable[[str], float]:
    def conv(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            msg = f"expected a number of {unit}, got {text!r}"
            raise InputError(msg) from None
        if not np.isfinite(v):
            msg = f"expected a finite number of {unit}, got {text!r}"
            raise InputError(msg)
        if minimum is not None and v < minimum:
            msg = f"expected at least {minimum:g} {unit}, got {text!r}"
            raise InputError(msg)
        return v

    return conv


def _sha256(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()
