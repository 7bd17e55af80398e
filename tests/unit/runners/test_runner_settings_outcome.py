from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import mlperf_loadgen as lg
import numpy as np
import pytest

from infergy.core.trace import Scenario
from infergy.errors import LoadgenSettingsError
from infergy.runners import WorkloadConfig
from infergy.runners.lg_settings import (
    CALIBRATION_MAX_SAMPLES,
    CALIBRATION_OVERGENERATE,
    Calibration,
    apply_settings,
    build_settings,
    calibration_settings,
    steady_capacity,
)
from infergy.runners.outcome import build_outcome

CAL = Calibration(
    capacity_sps=10_000.0,
    batch_latency_ns=3_000_000,
    single_latency_ns=500_000,
    multi_latency_ns=2_000_000,
)


def cfg(scenario: Scenario, **kw: object) -> WorkloadConfig:
    return WorkloadConfig(
        backend="onnxruntime", scenario=scenario, duration_s=10, seed=5, **kw
    ).validate()  # type: ignore[arg-type]


def test_settings_follow_the_calibration() -> None:
    ss = build_settings(cfg(Scenario.SINGLE_STREAM), CAL)
    assert ss["scenario"] == "SingleStream" and ss["single_stream_expected_latency_ns"] == 400_000
    assert ss["min_duration_ms"] == 10_000 and ss["schedule_rng_seed"] == 5
    ms = build_settings(cfg(Scenario.MULTI_STREAM), CAL)
    assert ms["multi_stream_expected_latency_ns"] == 1_600_000
    off = build_settings(cfg(Scenario.OFFLINE), CAL)
    assert off["offline_expected_qps"] == pytest.approx(10_000)  # 1.1x duration at par
    off_hint = build_settings(cfg(Scenario.OFFLINE, target_qps=50_000.0), CAL)
    assert off_hint["offline_expected_qps"] == 50_000
    srv = build_settings(cfg(Scenario.SERVER), CAL)
    assert srv["server_target_qps"] == 5_000 and srv["server_target_latency_ns"] == 15_000_000
    srv2 = build_settings(cfg(Scenario.SERVER, target_qps=100.0, target_latency_ms=50.0), CAL)
    assert srv2["server_target_qps"] == 100 and srv2["server_target_latency_ns"] == 50_000_000


def test_settings_apply_to_real_loadgen() -> None:
    ts = apply_settings(lg, build_settings(cfg(Scenario.SERVER, target_qps=123.0), CAL))
    assert ts.scenario == lg.TestScenario.Server and ts.server_target_qps == 123.0
    assert ts.mode == lg.TestMode.PerformanceOnly and ts.min_duration_ms == 10_000


def test_unmeetable_settings_are_refused() -> None:
    with pytest.raises(LoadgenSettingsError, match="Server target") as err:
        build_settings(cfg(Scenario.SERVER, target_qps=20_000.0), CAL)
    assert err.value.exit_code == 2 and "10,000" in (err.value.hint or "")
    fast = Calibration(1e9, 1000, 1000, 1000)
    with pytest.raises(LoadgenSettingsError, match="pre-generate"):
        build_settings(cfg(Scenario.OFFLINE), fast)


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%m-%d-%Y %H:%M:%S.%f")[:-3]


def _detail(d: Path, begin_ns: int, end_ns: int, scenario: str = "Server") -> None:
    d.mkdir(parents=True, exist_ok=True)
    rows = [
        ("effective_scenario", f'"{scenario}"'), ("power_begin", f'"{_utc(begin_ns)}"'),
        ("power_end", f'"{_utc(end_ns)}"'), ("result_validity", '"VALID"'),
        ("result_query_count", "3"), ("result_completed_samples_per_sec", "99.5"),
        ("result_90.00_percentile_latency_ns", "1500"),
    ]  # fmt: skip
    lines = [f':::MLLOG {{"key": "{k}", "value": {v}, "time_ms": 1.0, "metadata": {{}}}}'
             for k, v in rows]  # fmt: skip
    (d / "mlperf_log_detail.txt").write_text("\n".join(lines) + "\n")


def test_outcome_converts_clocks_splits_devices_and_checks_the_window(tmp_path: Path) -> None:
    mono_to_wall = 1_700_000_000_000_000_000
    mono_to_session = mono_to_wall + 250  # the session scale is 250 ns off the wall clock
    rec = np.array([[1_000_000_000, 1_002_000_000, 1, 0],
                    [1_001_000_000, 1_004_000_000, 1, 1],
                    [1_003_000_000, 1_009_000_000, 1, 0]], dtype=np.int64)  # fmt: skip
    _detail(tmp_path, mono_to_wall + 1_000_000_000, mono_to_wall + 1_009_000_000)
    out = build_outcome(rec, scenario=Scenario.SERVER, device_names=["gpu0", "gpu1"],
                        loadgen_dir=tmp_path, mono_to_session_ns=mono_to_session,
                        mono_to_wall_ns=mono_to_wall)  # fmt: skip
    assert out.validity == "VALID" and out.problems == []
    assert out.window_disagreement_ms is not None and out.window_disagreement_ms < 1.0
    assert out.queries.issue_ns.min() == 1_000_000_000 + mono_to_session
    assert len(out.per_device["gpu0"]) == 2 and len(out.per_device["gpu1"]) == 1
    assert out.loadgen["samples_per_second"] == 99.5 and out.loadgen["latency_ns"] == {"p90": 1500}
    assert out.loadgen["window_session_ns"][0] == out.power_begin_ns + 250  # type: ignore[operator]


def test_outcome_reports_a_window_disagreement_and_count_mismatch(tmp_path: Path) -> None:
    rec = np.array([[0, 10_000_000, 1, 0], [20_000_000, 30_000_000, 1, 0]], dtype=np.int64)
    _detail(tmp_path, 1_700_000_000_000_000_000 - 8_000_000, 1_700_000_000_030_000_000)
    out = build_outcome(
        rec,
        scenario=Scenario.SERVER,
        device_names=["cpu"],
        loadgen_dir=tmp_path,
        mono_to_session_ns=0,
        mono_to_wall_ns=1_700_000_000_000_000_000,
        failure="x",
        failures=2,
    )
    text = "\n".join(out.problems)
    assert out.window_disagreement_ms == pytest.approx(8.0, abs=1.0)
    assert "disagree by" in text and "LoadGen counted 3" in text and "2 inference error" in text


def test_outcome_without_logs_or_queries(tmp_path: Path) -> None:
    out = build_outcome(np.zeros((0, 4), np.int64), scenario=Scenario.OFFLINE,
                        device_names=["cpu"], loadgen_dir=tmp_path / "none",
                        mono_to_session_ns=0, mono_to_wall_ns=0)  # fmt: skip
    assert out.validity == "UNKNOWN" and len(out.queries) == 0
    assert any("unreadable" in p for p in out.problems)
    assert any("no query" in p for p in out.problems)


def test_calibration_run_settings_overgenerate_what_the_loop_would_do() -> None:
    s = calibration_settings(cfg(Scenario.SERVER), 2.0, 10_000.0)
    assert s["scenario"] == "Offline" and s["min_duration_ms"] == 2000
    generated = 1.1 * 2.0 * s["offline_expected_qps"]  # LoadGen's Offline sample count
    assert generated == pytest.approx(CALIBRATION_OVERGENERATE * 10_000 * 2.0)
    assert s["sample_index_rng_seed"] == 5
    huge = calibration_settings(cfg(Scenario.OFFLINE), 10.0, 1e9)
    assert 1.1 * 10.0 * huge["offline_expected_qps"] == pytest.approx(CALIBRATION_MAX_SAMPLES)
    assert Calibration(1.0, 1, 1, 1).loop_capacity_sps is None


def _rows(*rows: tuple[int, int, int]) -> np.ndarray:
    return np.array([(i, c, n, 0) for i, c, n in rows], dtype=np.int64)


def test_steady_capacity_uses_the_second_half_before_the_deadline() -> None:
    ms = 1_000_000
    # one query issued at 0; a slow start (ramp), then 10 samples every 10 ms
    rows = [(0, 50 * ms, 1)] + [(0, t * ms, 10) for t in range(60, 1001, 10)]
    rows += [(0, 1200 * ms, 10_000)]  # completed after the deadline: ignored
    sps = steady_capacity(_rows(*rows), deadline_ns=1000 * ms)
    assert sps == pytest.approx(1000.0, rel=0.02)
    assert steady_capacity(_rows((0, 2000 * ms, 5)), deadline_ns=1000 * ms) == 0.0
    # too few late records: the whole span
    assert steady_capacity(_rows((0, 500 * ms, 100)), 1000 * ms) == pytest.approx(200.0)
