"""MLPerf LoadGen logs: ``mlperf_log_detail.txt`` and ``mlperf_log_summary.txt``.

The detail log has one JSON record per line, ``:::MLLOG {"key": ..., "value": ..., "time_ms": ...,
"metadata": {"is_error": ..., "is_warning": ..., ...}}``. What infergy needs from it: the measured
window ``power_begin``/``power_end`` (``"MM-DD-YYYY HH:MM:SS.fff"``, UTC, written by LoadGen's
``DateTimeStringForPower``), the scenario and mode, every ``result_*`` and ``effective_*`` value,
and the records flagged as errors or warnings. Very old logs are said to carry
``POWER_BEGIN: mode <m> time <t>`` instead; that form is accepted but was never seen in a real file.

The summary log is human-readable ``key : value`` text with a headline metric (``Samples per
second: 93063.4``, ``Completed samples per second : 494.79``, ``90.0th percentile latency (ns) :
624346``) and ``Result is : VALID``.
Sources: shared/research/libs.md section 1 and ptd.md section 3.2; fixtures recorded with the
real LoadGen under tests/fixtures/formats/loadgen/.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from infergy.core.mlperf import LoadgenRun
from infergy.core.trace import Scenario, Window
from infergy.errors import InputError, TraceError
from infergy.formats.common import read_text_file
from infergy.formats.ptd import parse_ptd_time

DETAIL_NAME = "mlperf_log_detail.txt"
SUMMARY_NAME = "mlperf_log_summary.txt"
_MLLOG = ":::MLLOG"
_OLD_POWER_RE = re.compile(
    r"\bPOWER_(BEGIN|END)\b\W*(?:mode\s+(\S+)\s+)?time\s+"
    r"(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2}(?:\.\d+)?)"
)
_PERCENTILE_RE = re.compile(r"result_(\d+(?:\.\d+)?)_percentile_latency_ns")


def _validity(text: object) -> bool | None:
    if isinstance(text, str) and text.strip().upper() in ("VALID", "INVALID"):
        return text.strip().upper() == "VALID"
    return None


def _scenario(text: object, problems: list[str]) -> Scenario | None:
    if not isinstance(text, str):
        return None
    try:
        return Scenario.parse(text)
    except TraceError as err:
        problems.append(str(err))
        return None


@dataclass(frozen=True)
class LoadgenSummary:
    """What ``mlperf_log_summary.txt`` says.

    Attributes:
        scenario: from ``Scenario : ...``.
        mode: ``PerformanceOnly``, ``AccuracyOnly``...
        result_valid: ``Result is : VALID`` -> True, ``INVALID`` -> False.
        metric_name: the headline metric's label, e.g. ``Samples per second``.
        metric_value: its value.
        fields: every ``key : value`` pair as written (the first occurrence of a key wins).
        problems: what could not be read.
    """

    scenario: Scenario | None
    mode: str | None
    result_valid: bool | None
    metric_name: str | None
    metric_value: float | None
    fields: dict[str, str]
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LoadgenDetail:
    """What ``mlperf_log_detail.txt`` says about a run (plus its summary, when loaded beside it).

    Attributes:
        power_begin_ns: start of the measured window (ns, UTC), or None.
        power_end_ns: end of the measured window (the last completion), or None.
        scenario: the effective (else requested) scenario.
        mode: the effective (else requested) test mode, e.g. ``PerformanceOnly``.
        results: every ``result_*`` record, typed as in the JSON (int, float, bool, str).
        settings: every ``effective_*`` record, keyed without the ``effective_`` prefix.
        errors: messages of the records flagged ``is_error`` (``key: value``).
        warnings: messages of the records flagged ``is_warning``.
        version: ``loadgen_version``, e.g. ``6.0.17 @ d6147c7eb7``.
        problems: unreadable lines and values.
        summary: the summary log found beside the detail log, if any.
        values: every key's first value (what MLPerf's checker reads: a log holding several
            runs is read at the first).
    """

    power_begin_ns: int | None
    power_end_ns: int | None
    scenario: Scenario | None
    mode: str | None
    results: dict[str, object]
    settings: dict[str, object]
    errors: list[str]
    warnings: list[str]
    version: str | None
    problems: list[str]
    summary: LoadgenSummary | None = None
    values: dict[str, object] = field(default_factory=dict)

    def mlperf_run(self) -> LoadgenRun | None:
        """What MLPerf's checker reads of this run (None: the scenario is unknown)."""
        if self.scenario is None:
            return None
        return LoadgenRun(self.scenario, self.values)

    @property
    def result_query_count(self) -> int | None:
        """``result_query_count``: queries in the measured run (MultiStream: 8 samples each)."""
        n = self.results.get("result_query_count")
        return n if isinstance(n, int) and not isinstance(n, bool) else None

    def invalid_reason(self) -> str:
        """Why LoadGen calls the run INVALID, in its words.

        ``result_invalid_reason``, else the constraints it logged as not met (early stopping
        logs no reason of its own).
        """
        reason = str(self.values.get("result_invalid_reason") or "").strip()
        if reason:
            return reason
        unmet = {
            "result_perf_constraints_met": "performance constraints not met",
            "result_min_duration_met": "min duration not met",
            "result_min_queries_met": "min queries not met",
            "early_stopping_met": "early stopping not met",
        }
        why = [text for key, text in unmet.items() if self.values.get(key) is False]
        detail = " ".join(str(self.values.get("early_stopping_result") or "").split())
        if "early stopping not met" in why and detail:
            why[why.index("early stopping not met")] += f" ({detail.removeprefix('* ')})"
        return "; ".join(why) or "no reason logged"

    @property
    def result_valid(self) -> bool | None:
        """``result_validity`` (VALID -> True), else the summary's verdict, else None."""
        valid = _validity(self.results.get("result_validity"))
        if valid is None and self.summary is not None:
            return self.summary.result_valid
        return valid

    @property
    def latency_percentiles_ns(self) -> dict[str, int]:
        """Latency percentiles, e.g. ``{"p50": ..., "p90": ..., "p99": ..., "p99.9": ...}``."""
        out: dict[str, int] = {}
        for key, value in self.results.items():
            m = _PERCENTILE_RE.fullmatch(key)
            if m and isinstance(value, int | float) and not isinstance(value, bool):
                out[f"p{float(m.group(1)):g}"] = int(value)
        return out

    @property
    def window(self) -> Window | None:
        """[power_begin, power_end] as a Window, when both are known and in order."""
        if self.power_begin_ns is None or self.power_end_ns is None:
            return None
        if self.power_end_ns <= self.power_begin_ns:
            return None
        return Window(self.power_begin_ns, self.power_end_ns)


def _message(key: str, value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return f"{key}: {text}"


@dataclass
class _Records:
    """What one pass over a detail log collects (local to a parse, never shared)."""

    first: dict[str, object] = field(default_factory=dict)
    results: dict[str, object] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    power: dict[str, list[str]] = field(
        default_factory=lambda: {"power_begin": [], "power_end": []}
    )
    bad: list[int] = field(default_factory=list)
    records: int = 0
    repeated: dict[str, int] = field(default_factory=dict)

    def old_form(self, line: str) -> None:
        old = _OLD_POWER_RE.search(line)
        if old is not None:
            self.power[f"power_{old.group(1).lower()}"].append(old.group(3))
            if old.group(2):
                self.first.setdefault("effective_test_mode", old.group(2))

    def record(self, rec: dict[str, object]) -> None:
        key, value, meta = rec["key"], rec.get("value"), rec.get("metadata")
        if not isinstance(key, str):
            raise TypeError
        self.records += 1
        if isinstance(meta, dict) and meta.get("is_error"):
            self.errors.append(_message(key, value))
        elif isinstance(meta, dict) and meta.get("is_warning"):
            self.warnings.append(_message(key, value))
        if key in self.power:
            self.power[key].append(str(value))
        elif key in self.first and key.startswith(("result_", "effective_")):
            self.repeated[key] = self.repeated.get(key, 1) + 1
        elif key.startswith("result_"):  # the first one wins, as in MLPerf's checker
            self.results[key] = value
        elif key.startswith("effective_"):
            self.settings[key.removeprefix("effective_")] = value
        self.first.setdefault(key, value)

    def text(self, key: str) -> str | None:
        """The first value logged under ``effective_<key>``, else ``requested_<key>``."""
        value = self.first.get(f"effective_{key}", self.first.get(f"requested_{key}"))
        return value if isinstance(value, str) else None


def parse_loadgen_detail(text: str) -> LoadgenDetail:
    """Parse ``mlperf_log_detail.txt``; never raises on content (problems are reported)."""
    acc = _Records()
    for lineno, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = raw.strip()
        at = line.find(_MLLOG)
        if at < 0:
            acc.old_form(line)
            continue
        try:
            rec = json.loads(line[at + len(_MLLOG) :])
            acc.record(rec)
        except (ValueError, TypeError, KeyError, AttributeError):
            acc.bad.append(lineno)
    problems: list[str] = []
    if acc.bad:
        s = "" if len(acc.bad) == 1 else "s"
        problems.append(
            f"{len(acc.bad)} unparseable :::MLLOG line{s} skipped (first at line {acc.bad[0]})"
        )
    if acc.records == 0 and not any(acc.power.values()):
        problems.append("no :::MLLOG records found: is this an mlperf_log_detail.txt?")
    if acc.repeated:
        keys = ", ".join(sorted(acc.repeated))
        problems.append(
            f"{len(acc.repeated)} result/setting keys appear more than once (several runs in one "
            f"log?): the first of each is used, as MLPerf's checker does ({keys[:200]})"
        )
    begin, end = (_power_time(k, acc.power[k], problems) for k in ("power_begin", "power_end"))
    if begin is not None and end is not None and end <= begin:
        problems.append("power_end is not after power_begin")
    version = acc.first.get("loadgen_version")
    return LoadgenDetail(
        power_begin_ns=begin,
        power_end_ns=end,
        scenario=_scenario(acc.text("scenario"), problems),
        mode=acc.text("test_mode"),
        results=acc.results,
        settings=acc.settings,
        errors=acc.errors,
        warnings=acc.warnings,
        version=version if isinstance(version, str) else None,
        problems=problems,
        values=acc.first,
    )


def _power_time(key: str, values: list[str], problems: list[str]) -> int | None:
    if not values:
        return None
    if len(values) > 1:
        problems.append(
            f"{key} appears {len(values)} times; the first one is used, as MLPerf's checker does"
        )
    try:
        return parse_ptd_time(values[0])
    except InputError as err:
        problems.append(f"{key}: {err}")
        return None


def parse_loadgen_summary(text: str) -> LoadgenSummary:
    """Parse ``mlperf_log_summary.txt``; never raises on content.

    The headline metric is the ``key : value`` line between ``Mode`` and ``Result is`` (what
    LoadGen prints there depends on the scenario and its version).
    """
    fields: dict[str, str] = {}
    name: str | None = None
    for raw in text.removeprefix("\ufeff").split("\n"):
        key, sep, value = raw.strip().lstrip("*").partition(":")
        key = key.strip()
        if not sep or not key or key.startswith("="):
            continue
        if name is None and "Mode" in fields and "Result is" not in fields and key != "Result is":
            name = key
        fields.setdefault(key, value.strip())
    problems: list[str] = []
    if not fields:
        problems.append("no 'key : value' lines found: is this an mlperf_log_summary.txt?")
    metric: float | None = None
    if name is not None:
        try:
            metric = float(fields[name])
        except ValueError:
            problems.append(f"headline {name!r} is not a number: {fields[name]!r}")
    return LoadgenSummary(
        scenario=_scenario(fields.get("Scenario"), problems),
        mode=fields.get("Mode"),
        result_valid=_validity(fields.get("Result is")),
        metric_name=name,
        metric_value=metric,
        fields=fields,
        problems=problems,
    )


def load_loadgen_summary(path: str | os.PathLike[str]) -> LoadgenSummary:
    """Read and parse an ``mlperf_log_summary.txt`` file."""
    return parse_loadgen_summary(read_text_file(path, "LoadGen summary log"))


def load_loadgen_detail(path: str | os.PathLike[str]) -> LoadgenDetail:
    """Read a LoadGen detail log, given the file or the directory LoadGen wrote it into.

    For a directory, ``mlperf_log_detail.txt`` is read and ``mlperf_log_summary.txt`` beside it
    attached as :attr:`LoadgenDetail.summary`; a directory with only a summary gives a detail
    without a window (and says so in ``problems``).

    Raises:
        InputError: the path is missing, unreadable, or a directory with neither log.
    """
    p = Path(path)
    if not p.is_dir():
        return parse_loadgen_detail(read_text_file(p, "LoadGen detail log"))
    detail_path, summary_path = p / DETAIL_NAME, p / SUMMARY_NAME
    summary = load_loadgen_summary(summary_path) if summary_path.is_file() else None
    if detail_path.is_file():
        detail = parse_loadgen_detail(read_text_file(detail_path, "LoadGen detail log"))
        return replace(detail, summary=summary)
    if summary is None:
        msg = f"no {DETAIL_NAME} or {SUMMARY_NAME} in {p}"
        raise InputError(msg, hint="give the directory LoadGen wrote its logs into (its outdir)")
    return LoadgenDetail(
        power_begin_ns=None,
        power_end_ns=None,
        scenario=summary.scenario,
        mode=summary.mode,
        results={},
        settings={},
        errors=[],
        warnings=[],
        version=None,
        problems=[f"no {DETAIL_NAME} in {p}: power_begin/power_end unknown"],
        summary=summary,
    )
