"""MLPerf's checker rules in core: its mean, and each scenario's power result, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from infergy.core.energy import mlperf_mean_watts
from infergy.core.inputs import Workload
from infergy.core.mlperf import LoadgenRun, mlperf_rule, ranging_delta_percent, ranging_ok
from infergy.core.trace import QueryLog, Scenario, Window

S = 1_000_000_000
WIN = Window(10 * S, 20 * S)


def test_the_mean_is_the_checker_s_over_the_lines_as_written() -> None:
    t = np.array([10, 11, 12, 12, 13, 14, 15, 16, 20, 9], dtype=np.int64) * S
    w = np.array([999.0, 100.0, 100.0, 300.0, -1.0, 0.0, np.nan, 200.0, 999.0, 999.0])
    m = mlperf_mean_watts(t, w, WIN)
    # strict edges drop t=10 and t=20; W>0 drops -1, 0 and NaN; both lines at t=12 count
    assert m.mean_w == pytest.approx((100 + 100 + 300 + 200) / 4)
    assert (m.samples, m.repeated, m.overrange) == (4, 2, 0)


def test_overrange_readings_are_kept_as_the_checker_keeps_them() -> None:
    t = np.array([11, 12, 13], dtype=np.int64) * S
    m = mlperf_mean_watts(t, np.array([100.0, 9.9e37, 300.0]), WIN)
    assert m.mean_w == pytest.approx((100 + 9.9e37 + 300) / 3)
    assert m.overrange == 1
    inf = mlperf_mean_watts(t, np.array([100.0, np.inf, 300.0]), WIN)
    assert inf.mean_w == np.inf and inf.overrange == 1


def test_no_sample_in_the_window_has_no_mean() -> None:
    m = mlperf_mean_watts(np.array([5 * S]), np.array([100.0]), WIN)
    assert m.mean_w is None and m.samples == 0


def _run(scenario: Scenario, **values: object) -> LoadgenRun:
    return LoadgenRun(scenario, values)


def test_offline_and_server_results_are_watts_and_loadgen_s_throughput_per_watt() -> None:
    off = mlperf_rule(Scenario.OFFLINE, _run(Scenario.OFFLINE, result_samples_per_second=1000.0))
    assert off.power_unit == "Watts" and off.power_metric(250.0, 600.0, 1) == 250.0
    assert off.efficiency(250.0, 250.0) == pytest.approx(4.0)
    srv = mlperf_rule(
        Scenario.SERVER,
        _run(Scenario.SERVER, result_completed_samples_per_sec=500.0,
             result_scheduled_samples_per_sec=510.0),
    )  # fmt: skip
    assert srv.efficiency(250.0, 250.0) == pytest.approx(2.0)
    assert srv.performance_field == "result_completed_samples_per_sec"
    v40 = mlperf_rule(
        Scenario.SERVER, _run(Scenario.SERVER, result_scheduled_samples_per_sec=510.0)
    )
    assert v40.efficiency(255.0, 255.0) == pytest.approx(2.0)  # before v4.1: scheduled
    llm = mlperf_rule(
        Scenario.OFFLINE,
        _run(Scenario.OFFLINE, result_tokens_per_second=3000.0, result_samples_per_second=10.0,
             requested_use_token_latencies=True),
    )  # fmt: skip
    assert llm.efficiency_unit == "tokens/J" and llm.efficiency(300.0, 300.0) == 10.0


def test_stream_results_are_millijoules_per_query_and_samples_per_joule() -> None:
    ss = mlperf_rule(Scenario.SINGLE_STREAM, _run(Scenario.SINGLE_STREAM, result_query_count=6000))
    mj = ss.power_metric(200.0, 600.0, 6000)
    assert mj == pytest.approx(200.0 * 600.0 * 1000 / 6000)  # 20,000 mJ
    assert ss.efficiency(200.0, mj) == pytest.approx(1000 / mj)
    ms = mlperf_rule(Scenario.MULTI_STREAM, _run(Scenario.MULTI_STREAM, result_query_count=750))
    mj_ms = ms.power_metric(200.0, 600.0, 750)
    assert mj_ms == pytest.approx(160_000.0)
    assert ms.efficiency(200.0, mj_ms) == pytest.approx(8000 / 160_000.0)  # 6000 samples/120 kJ


def test_multistream_inferred_from_singlestream_is_8x_per_query_same_per_sample() -> None:
    run = _run(Scenario.SINGLE_STREAM, result_query_count=6000, early_stopping_latency_ms=125_000)
    rule = mlperf_rule(Scenario.MULTI_STREAM, run)
    mj = rule.power_metric(200.0, 600.0, 6000)
    assert mj == pytest.approx(8 * 20_000.0)
    assert rule.efficiency(200.0, mj) == pytest.approx(1000 / 20_000.0)  # the SS samples/J
    assert rule.performance == pytest.approx(1.0)  # 8 x 0.125 ms
    assert rule.inferred and rule.notes
    wl = Workload.of_counts(Scenario.MULTI_STREAM, 6000, sample_count=6000, loadgen=run)
    assert wl.sample_count == 6000 and wl.energy_queries == pytest.approx(750.0)


def test_offline_inferred_from_stream_runs() -> None:
    from_ss = mlperf_rule(
        Scenario.OFFLINE, _run(Scenario.SINGLE_STREAM, result_qps_without_loadgen_overhead=800.0)
    )
    assert from_ss.efficiency(200.0, 200.0) == pytest.approx(4.0)
    from_ms = mlperf_rule(
        Scenario.OFFLINE, _run(Scenario.MULTI_STREAM, result_mean_query_latency_ns=4_000_000)
    )
    assert from_ms.performance == pytest.approx(2000.0)  # 8 samples per 4 ms
    assert from_ms.efficiency(200.0, 200.0) == pytest.approx(10.0)
    no = mlperf_rule(Scenario.SERVER, _run(Scenario.OFFLINE, result_samples_per_second=1.0))
    assert not no.valid_pair and no.power_metric(200.0, 1.0, 1) is None


def test_an_offline_query_log_of_batches_is_one_query() -> None:
    issue = np.full(3, 5 * S, dtype=np.int64)
    q = QueryLog(issue, issue + np.array([1, 2, 3]) * S, np.array([256, 256, 100]))
    wl = Workload.of_queries(Scenario.OFFLINE, q)
    assert (wl.query_count, wl.sample_count, wl.batches) == (1, 612, 3)
    assert not wl.rows_are_queries
    server = Workload.of_queries(Scenario.SERVER, q)
    assert server.query_count == 3 and server.batches is None


def test_samples_issued_come_from_loadgen_s_counts() -> None:
    off = _run(Scenario.OFFLINE, result_query_count=1, generated_samples_per_query=110_880_000)
    assert off.sample_count == 110_880_000
    ms = _run(Scenario.MULTI_STREAM, result_query_count=10, effective_samples_per_query=8)
    assert ms.sample_count == 80


def test_the_ranging_rule_rounds_as_the_power_checker_and_is_strict() -> None:
    assert ranging_delta_percent(95.0, 100.0) == -5.0 and not ranging_ok(-5.0)
    assert ranging_delta_percent(95.01, 100.0) == -4.99 and ranging_ok(-4.99)
    assert ranging_ok(ranging_delta_percent(150.0, 100.0))  # higher by any amount is fine
    assert ranging_delta_percent(100.000004, 100.0) == 0.0  # means rounded to 5 decimals
