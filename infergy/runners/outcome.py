"""Turn a run's raw records and LoadGen's logs into a :class:`~infergy.runners.types.RunOutcome`.

Records carry ``time.monotonic_ns()`` of the LoadGen process; the session clock is a fixed
offset from it (``SessionClock``), and LoadGen's ``power_begin``/``power_end`` are wall-clock
UTC with millisecond resolution. The window check compares our first issue and last
completion with LoadGen's edges on the wall clock (the LoadGen process's own wall - monotonic
offset, taken right after the run).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from infergy.core.gen_logs import GenerationLog, PhaseLog, TokenLog
from infergy.core.trace import QueryLog, Scenario
from infergy.errors import InputError
from infergy.formats.loadgen import LoadgenDetail, load_loadgen_detail
from infergy.runners.attempts import Attempt, attempts_note, window_problem
from infergy.runners.recorder import I64
from infergy.runners.types import RunOutcome

WINDOW_TOLERANCE_MS = 5.0
_HEADLINE = {
    Scenario.OFFLINE: "result_samples_per_second",
    Scenario.SERVER: "result_completed_samples_per_sec",
    Scenario.SINGLE_STREAM: "result_qps_with_loadgen_overhead",
    Scenario.MULTI_STREAM: "result_qps_with_loadgen_overhead",
}


def query_logs(
    records: I64, to_session: Callable[[I64], I64], device_names: list[str]
) -> tuple[QueryLog, dict[str, QueryLog]]:
    """All queries and the queries per device, on the session clock, in completion order."""
    if records.size:
        records = records[np.argsort(records[:, 1], kind="stable")]
    issue, done = to_session(records[:, 0]), to_session(records[:, 1])
    samples, slot = records[:, 2], records[:, 3]
    per = {
        name: QueryLog(issue[slot == i], done[slot == i], samples[slot == i])
        for i, name in enumerate(device_names)
    }
    return QueryLog(issue, done, samples), per


def generation_log(
    tokens: I64,
    phases: I64,
    mono_to_session_ns: int,
    *,
    executors: int,
    describe: dict[str, Any],
) -> GenerationLog:
    """A generative run's raw token and phase rows as a core log, on the session clock."""
    off = np.int64(mono_to_session_ns)
    if tokens.size:
        tokens = tokens[np.argsort(tokens[:, 2], kind="stable")]  # completion order
    tk = TokenLog(tokens[:, 0] + off, tokens[:, 1] + off, tokens[:, 2] + off, tokens[:, 3],
                  tokens[:, 4], tokens[:, 5])  # fmt: skip
    ph = PhaseLog(phases[:, 0] + off, phases[:, 1] + off, phases[:, 2], phases[:, 3],
                  phases[:, 4], phases[:, 5])  # fmt: skip
    lengths = describe.get("lengths")
    return GenerationLog(ph, tk, executors=executors, lengths=lengths,
                         model=describe.get("llm"))  # fmt: skip


def _headline(detail: LoadgenDetail, scenario: Scenario) -> float | None:
    value = detail.results.get(_HEADLINE[scenario])
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if scenario is Scenario.MULTI_STREAM:
        per_query = detail.settings.get("multi_stream_samples_per_query", 8)
        return float(value) * float(per_query if isinstance(per_query, int | float) else 8)
    return float(value)


def build_outcome(
    records: I64,
    *,
    scenario: Scenario,
    device_names: list[str],
    loadgen_dir: Path,
    mono_to_session_ns: int,
    mono_to_wall_ns: int,
    failure: str | None = None,
    failures: int = 0,
    settings: dict[str, Any] | None = None,
    backend_problems: list[str] | None = None,
    duration_s: float | None = None,
    attempts: list[Attempt] | None = None,
) -> RunOutcome:
    """Assemble the outcome of one run (never raises on LoadGen's content).

    Args:
        records: ``(n, 4)`` issue/complete monotonic ns, samples, device slot.
        scenario: the run's scenario.
        device_names: slot -> ``gpu<i>``/``cpu``.
        loadgen_dir: where LoadGen wrote its logs.
        mono_to_session_ns: session ns = monotonic ns + this.
        mono_to_wall_ns: the LoadGen process's wall ns - monotonic ns after the run.
        failure: the first error inside a callback or worker, if any.
        failures: how many there were.
        settings: the TestSettings values given to LoadGen.
        backend_problems: what the backends reported at load (e.g. int8 calibrated on
            generated inputs), one line each.
        duration_s: the requested ``--duration``.
        attempts: every measured attempt, the kept one last (rejected ones are noted).
    """

    def to_session(t: I64) -> I64:
        return t + np.int64(mono_to_session_ns)

    queries, per_device = query_logs(records, to_session, device_names)
    problems: list[str] = list(backend_problems or [])
    if failure:
        problems.append(f"{failures} inference error(s) during the run; first: {failure}")
    try:
        detail: LoadgenDetail | None = load_loadgen_detail(loadgen_dir)
    except InputError as err:
        detail = None
        problems.append(f"LoadGen logs unreadable: {err}")
    loadgen: dict[str, Any] = {"requested": settings or {}}
    if attempts:
        loadgen["attempts"] = [a.to_json() for a in attempts]
        problems += attempts_note(attempts)
        if duration_s is not None:
            problems += window_problem(scenario, attempts, duration_s)
    begin = end = None
    disagreement: float | None = None
    validity = "UNKNOWN"
    if detail is not None:
        begin, end = detail.power_begin_ns, detail.power_end_ns
        valid = detail.result_valid
        validity = "UNKNOWN" if valid is None else ("VALID" if valid else "INVALID")
        loadgen.update(
            version=detail.version, samples_per_second=_headline(detail, scenario),
            latency_ns=detail.latency_percentiles_ns, result_query_count=detail.result_query_count,
            results=detail.results, effective=detail.settings, errors=detail.errors,
            warnings=detail.warnings,
        )  # fmt: skip
        problems += [f"LoadGen: {e}" for e in detail.errors]
        problems += detail.problems
    problems.extend(validity_problem(validity, detail))
    if len(queries) == 0:
        problems.append("no query was completed")
    elif begin is not None and end is not None:
        first_wall = int(records[:, 0].min()) + mono_to_wall_ns
        last_wall = int(records[:, 1].max()) + mono_to_wall_ns
        d_begin_ms, d_end_ms = (first_wall - begin) / 1e6, (last_wall - end) / 1e6
        disagreement = max(abs(d_begin_ms), abs(d_end_ms))
        loadgen["window_edges_ms"] = {"first_issue_minus_power_begin": d_begin_ms,
                                      "last_complete_minus_power_end": d_end_ms}  # fmt: skip
        if disagreement > WINDOW_TOLERANCE_MS:
            why = (
                " (LoadGen builds the one Offline query of "
                f"{queries.total_samples:,} samples between power_begin and issuing it)"
                if scenario is Scenario.OFFLINE and abs(d_begin_ms) > abs(d_end_ms)
                else ""
            )
            problems.append(
                f"LoadGen's window and the recorded queries disagree by {disagreement:.1f} ms "
                f"(first issue - power_begin {d_begin_ms:+.1f} ms, last completion - power_end "
                f"{d_end_ms:+.1f} ms){why}"
            )
        offset = mono_to_session_ns - mono_to_wall_ns
        loadgen["window_session_ns"] = [begin + offset, end + offset]
    if len(queries):
        span_s = (int(queries.complete_ns.max()) - int(queries.issue_ns.min())) / 1e9
        recorded = queries.total_samples / span_s if span_s > 0 else None
        loadgen["recorded_samples_per_second"] = recorded
        if loadgen.get("samples_per_second") is None:  # MultiStream logs no throughput
            loadgen["samples_per_second"] = recorded
    _check_counts(queries, detail, scenario, problems)
    return RunOutcome(
        queries=queries, per_device=per_device, loadgen_dir=loadgen_dir, power_begin_ns=begin,
        power_end_ns=end, window_disagreement_ms=disagreement, validity=validity,
        loadgen=loadgen, problems=problems, degraded=bool(failure or failures),
        mlperf=detail.mlperf_run() if detail is not None else None,
    )  # fmt: skip


def validity_problem(validity: str, detail: LoadgenDetail | None) -> list[str]:
    """The one line that says a run is not a valid LoadGen result, with LoadGen's reason."""
    if validity == "VALID":
        return []
    if validity == "INVALID":
        why = detail.invalid_reason() if detail is not None else "no LoadGen log"
        return [f"LoadGen result INVALID: {why}"]
    return ["LoadGen's verdict is unknown (no result_validity in its logs)"]


def _check_counts(
    queries: QueryLog, detail: LoadgenDetail | None, scenario: Scenario, problems: list[str]
) -> None:
    """Our query count must match LoadGen's (Offline records batches, so it is skipped)."""
    if detail is None or scenario is Scenario.OFFLINE:
        return
    expected = detail.result_query_count
    if expected is not None and expected != len(queries):
        problems.append(f"recorded {len(queries)} queries but LoadGen counted {expected}")


def backend_problems(describe: dict[str, Any]) -> list[str]:
    """The ``problems`` every device's backend reported, each line once, in order."""
    lines: list[str] = []
    for device in describe.get("per_device") or []:
        for line in device.get("problems") or []:
            if line not in lines:
                lines.append(str(line))
    return lines
