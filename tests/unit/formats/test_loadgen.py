"""LoadGen detail and summary logs: recorded with the real LoadGen, and from a real submission."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from infergy.core.trace import Scenario
from infergy.errors import InputError
from infergy.formats.loadgen import (
    load_loadgen_detail,
    load_loadgen_summary,
    parse_loadgen_detail,
    parse_loadgen_summary,
)
from infergy.formats.ptd import load_ptd_log

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "formats"
RECORDED = FIX / "loadgen"
ORIN = FIX / "loadgen_real" / "orin_resnet50_offline_v3.1"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns(text: str) -> int:
    dt = datetime.strptime(text, "%m-%d-%Y %H:%M:%S.%f").replace(tzinfo=UTC)
    return (dt - EPOCH) // timedelta(microseconds=1) * 1000


def raw_records(path: Path) -> dict[str, object]:
    """Key -> value of the first record with that key, read with plain json (the ground truth)."""
    out: dict[str, object] = {}
    for line in path.read_text().splitlines():
        if line.startswith(":::MLLOG "):
            rec = json.loads(line[len(":::MLLOG ") :])
            out.setdefault(rec["key"], rec["value"])
    return out


# The summary's headline per scenario, and the detail record holding the same figure.
HEADLINES = {
    "SingleStream": ("90.0th percentile latency (ns)", "result_90.00_percentile_latency_ns"),
    "MultiStream": ("99.0th percentile latency (ns)", "result_99.00_percentile_latency_ns"),
    "Server": ("Completed samples per second", "result_completed_samples_per_sec"),
    "Offline": ("Samples per second", "result_samples_per_second"),
}


@pytest.mark.parametrize("name", sorted(HEADLINES))
def test_recorded_loadgen_logs(name: str) -> None:
    d = load_loadgen_detail(RECORDED / name)
    raw = raw_records(RECORDED / name / "mlperf_log_detail.txt")
    assert d.problems == [] and d.errors == []
    assert d.scenario is Scenario.parse(name)
    assert d.mode == "PerformanceOnly"
    assert d.version is not None and d.version.startswith("6.0.17 @ ")
    assert d.power_begin_ns == ns(str(raw["power_begin"]))
    assert d.power_end_ns == ns(str(raw["power_end"]))
    assert d.window is not None and 1.0 <= d.window.duration_s < 5.0  # min_duration was 1 s
    assert d.result_valid is True
    assert d.result_query_count == raw["result_query_count"] and d.result_query_count > 0
    p = d.latency_percentiles_ns
    assert set(p) == {"p50", "p90", "p95", "p97", "p99", "p99.9"}
    assert p["p50"] <= p["p90"] <= p["p99"] <= p["p99.9"]
    assert p["p90"] == raw["result_90.00_percentile_latency_ns"]
    assert d.settings["scenario"] == name and d.settings["min_duration_ms"] == 1000
    assert all(k.startswith("result_") for k in d.results)
    assert d.results["result_min_duration_met"] is True  # typed as in the JSON
    s = d.summary
    assert s is not None and s.problems == []
    assert (s.scenario, s.mode, s.result_valid) == (d.scenario, "PerformanceOnly", True)
    headline, record = HEADLINES[name]
    assert s.metric_name == headline
    assert s.metric_value == pytest.approx(float(raw[record]), rel=1e-5)  # summary rounds
    assert s.fields["SUT name"] == "PySUT"


def test_recorded_run_that_ran_out_of_queries() -> None:
    d = load_loadgen_detail(RECORDED / "SingleStream_ran_out")
    assert d.result_valid is False
    assert d.results["result_validity"] == "INVALID"
    assert len(d.errors) == 1
    assert d.errors[0].startswith("error_runtime: Ending early: Ran out of generated queries")
    assert d.summary is not None and d.summary.result_valid is False
    assert d.summary.fields["Min duration satisfied"] == "NO"
    assert d.summary.fields["Early stopping 90.0th percentile estimate"].isdigit()


def test_real_submission_orin_offline() -> None:
    d = load_loadgen_detail(ORIN / "mlperf_log_detail_excerpt.txt")
    assert d.problems == [] and d.errors == [] and d.warnings == []
    assert d.summary is None  # a file was given, not a directory
    assert d.version == "3.1 @ 7fa94e62f4"
    assert d.scenario is Scenario.OFFLINE and d.mode == "PerformanceOnly"
    assert d.power_begin_ns == ns("08-14-2023 18:41:36.504")
    assert d.power_end_ns == ns("08-14-2023 18:52:12.868")
    assert d.window is not None and d.window.duration_ns == 636_364_000_000
    assert d.result_valid is True and d.result_query_count == 1
    assert d.results["result_samples_per_second"] == 3526.29
    assert d.latency_percentiles_ns["p99.9"] == 635712575689
    assert d.settings["samples_per_query"] == 2244000
    assert d.settings["target_latency_percentile"] == 0.99
    s = load_loadgen_summary(ORIN / "mlperf_log_summary.txt")
    assert (s.scenario, s.result_valid) == (Scenario.OFFLINE, True)
    assert (s.metric_name, s.metric_value) == ("Samples per second", 3526.29)
    assert s.fields["SUT name"] == "LWIS_Server"
    assert s.fields["target_latency (ns)"] == "0"
    assert s.fields["99.90 percentile latency (ns)"] == "635712575689"


def test_real_window_over_real_spl() -> None:
    """MLPerf's rule on the real spl.txt head: samples strictly inside the window, W > 0."""
    d = load_loadgen_detail(ORIN / "mlperf_log_detail_excerpt.txt")
    log = load_ptd_log(FIX / "ptd" / "orin_offline_spl_head.txt")
    assert d.power_begin_ns is not None
    inside = log.watts[log.t_ns > d.power_begin_ns]
    # read off the fixture: the samples from 18:41:37.220 on (18:41:36.219 is before 36.504)
    expected = [5.66, 20.62, 24.16, 24.19, 24.31, 24.27, 24.13, 23.99, 23.94, 24.02, 24.02]
    expected += [23.97, 23.82, 23.91]
    assert inside.tolist() == expected
    assert float(np.mean(inside)) == pytest.approx(sum(expected) / 14)


def test_dirty_detail_log() -> None:
    good = (RECORDED / "Server" / "mlperf_log_detail.txt").read_text().splitlines()
    begin = next(line for line in good if '"power_begin"' in line)
    lines = [
        *good[:20],
        ':::MLLOG {"key": "power_begin", "value": "08-14-2023',  # truncated JSON
        ":::MLLOG [1, 2]",  # not an object
        ':::MLLOG {"value": 3}',  # no key
        ':::MLLOG {"key": 7, "value": 3}',  # key not a string
        "garbage \x00\ufffd",
        *good[20:],
        begin,  # power_begin twice
    ]
    d = parse_loadgen_detail("\ufeff" + "\r\n".join(lines) + "\r\n")
    assert d.problems[0] == "4 unparseable :::MLLOG lines skipped (first at line 21)"
    assert d.problems[1] == (
        "power_begin appears 2 times; the first one is used, as MLPerf's checker does"
    )
    assert d.scenario is Scenario.SERVER and d.result_valid is True
    assert d.power_begin_ns is not None and d.window is not None


def test_a_log_of_several_runs_is_read_at_its_first_as_mlperf_s_checker_does() -> None:
    """MLPerfLog and power_checker.py take each key's first occurrence (a FindPeakPerformance
    log holds several runs); the last one used to win."""

    def rec(key: str, value: str) -> str:
        return f':::MLLOG {{"key": "{key}", "value": {value}}}'

    text = "\n".join([
        rec("effective_scenario", '"SingleStream"'), rec("effective_min_duration_ms", "600000"),
        rec("power_begin", '"07-23-2024 15:48:32.939"'), rec("result_query_count", "100"),
        rec("power_end", '"07-23-2024 15:58:32.939"'), rec("result_validity", '"VALID"'),
        rec("effective_min_duration_ms", "1000"),
        rec("power_begin", '"07-23-2024 16:00:00.000"'), rec("result_query_count", "5"),
        rec("power_end", '"07-23-2024 16:00:01.000"'), rec("result_validity", '"INVALID"'),
    ])  # fmt: skip
    d = parse_loadgen_detail(text)
    assert d.result_query_count == 100 and d.result_valid is True
    assert d.settings["min_duration_ms"] == 600000
    assert d.window is not None and d.window.duration_s == pytest.approx(600.0)
    assert d.values["result_query_count"] == 100
    assert any("the first of each is used" in p for p in d.problems), d.problems
    run = d.mlperf_run()
    assert run is not None and run.query_count == 100 and run.validity == "VALID"


def test_bad_values_become_problems() -> None:
    text = "\n".join(
        [
            ':::MLLOG {"key": "effective_scenario", "value": "Interactive-ish"}',
            ':::MLLOG {"key": "power_begin", "value": "31-07-2025 09:43:18.295"}',
            ':::MLLOG {"key": "power_end", "value": "07-31-2025 09:43:18.295"}',
            ':::MLLOG {"key": "result_validity", "value": "MAYBE"}',
        ]
    )
    d = parse_loadgen_detail(text)
    assert d.scenario is None and d.power_begin_ns is None and d.window is None
    assert d.result_valid is None and d.result_query_count is None
    assert any("unknown scenario 'Interactive-ish'" in p for p in d.problems)
    assert any(p.startswith("power_begin: invalid PTD timestamp") for p in d.problems)


def test_window_order_and_requested_fallback() -> None:
    text = "\n".join(
        [
            ':::MLLOG {"key": "requested_scenario", "value": "MultiStream"}',
            ':::MLLOG {"key": "requested_test_mode", "value": "AccuracyOnly"}',
            ':::MLLOG {"key": "power_begin", "value": "07-31-2025 09:43:19.000"}',
            ':::MLLOG {"key": "power_end", "value": "07-31-2025 09:43:18.295"}',
        ]
    )
    d = parse_loadgen_detail(text)
    assert d.scenario is Scenario.MULTI_STREAM and d.mode == "AccuracyOnly"
    assert d.window is None and "power_end is not after power_begin" in d.problems


def test_old_power_begin_form() -> None:
    d = parse_loadgen_detail(
        "POWER_BEGIN: mode PerformanceOnly time 08-14-2023 18:41:36.504\n"
        "POWER_END: mode PerformanceOnly time 08-14-2023 18:52:12.868\n"
    )
    assert d.power_begin_ns == ns("08-14-2023 18:41:36.504")
    assert d.power_end_ns == ns("08-14-2023 18:52:12.868")
    assert d.mode == "PerformanceOnly" and d.problems == []


def test_not_a_loadgen_log() -> None:
    assert parse_loadgen_detail("hello\n").problems == [
        "no :::MLLOG records found: is this an mlperf_log_detail.txt?"
    ]
    s = parse_loadgen_summary("nothing to see")
    assert s.metric_name is None and s.result_valid is None and s.problems
    bad = parse_loadgen_summary("Mode : PerformanceOnly\nSamples per second: fast\nResult is : OK")
    assert bad.metric_name == "Samples per second" and bad.metric_value is None
    assert bad.result_valid is None and bad.problems


def test_load_loadgen_detail_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no mlperf_log_detail\.txt or mlperf_log_summary") as e:
        load_loadgen_detail(tmp_path)
    assert e.value.hint is not None and "outdir" in e.value.hint
    with pytest.raises(InputError, match="no such file"):
        load_loadgen_detail(tmp_path / "missing" / "mlperf_log_detail.txt")
    summary = (RECORDED / "Offline" / "mlperf_log_summary.txt").read_text()
    (tmp_path / "mlperf_log_summary.txt").write_text(summary)
    only_summary = load_loadgen_detail(tmp_path)
    assert only_summary.power_begin_ns is None and only_summary.window is None
    assert only_summary.scenario is Scenario.OFFLINE and only_summary.result_valid is True
    assert only_summary.problems[0].startswith("no mlperf_log_detail.txt in ")


def _detail_lines(**values: object) -> str:
    lines = ['{"key": "effective_scenario", "value": "Server"}']
    lines += [json.dumps({"key": k, "value": v}) for k, v in values.items()]
    return "\n".join(":::MLLOG " + line for line in lines) + "\n"


def test_an_invalid_run_says_which_constraint_loadgen_found_unmet():
    detail = parse_loadgen_detail(
        _detail_lines(
            result_validity="INVALID", result_invalid_reason="", result_min_duration_met=True,
            early_stopping_met=False,
            early_stopping_result=" * Run unsuccessful.  * Processed 190 queries.",
        )
    )  # fmt: skip
    assert detail.invalid_reason() == (
        "early stopping not met (Run unsuccessful. * Processed 190 queries.)"
    )
    reasoned = parse_loadgen_detail(
        _detail_lines(result_validity="INVALID", result_invalid_reason="Reduce target QPS")
    )
    assert reasoned.invalid_reason() == "Reduce target QPS"
    assert parse_loadgen_detail(_detail_lines()).invalid_reason() == "no reason logged"
