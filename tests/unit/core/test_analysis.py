"""The whole analysis on a synthetic run whose every figure is known analytically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from infergy.core.analysis import analyze
from infergy.core.clock import OffsetEstimate
from infergy.core.inputs import AnalysisOptions, SourceInput, Workload
from infergy.core.trace import NS_PER_S, QueryLog, Scenario, Semantics, Trace, Window
from infergy.errors import AnalysisError
from tests.synth import Bursty, analyzer_trace, gpu_instant_trace

S = NS_PER_S
T0 = 1_750_000_000 * S
KEYS = {
    "schema_version", "run_id", "status", "problems", "scenario", "backend", "model",
    "precision", "batch_size", "devices", "host", "window", "performance", "power",
    "efficiency", "mlperf", "provenance",
}  # fmt: skip
POWER_KEYS = {
    "kind", "semantics", "energy_joules", "average_watts", "mlperf_average_watts",
    "idle_watts", "samples", "coverage", "uncertainty_joules", "clock_offset_ms",
}  # fmt: skip
EFF_KEYS = {
    "samples_per_second_per_watt", "joules_per_query", "millijoules_per_query_mlperf",
    "dynamic_joules_per_query", "per_query_joules",
}  # fmt: skip


def single_stream_queries(rng, start_s, end_s, latency_s=0.004):
    issue = np.arange(start_s, end_s - latency_s, latency_s * 1.25)
    lat = latency_s * (1 + 0.1 * rng.random(issue.size))
    return QueryLog(
        T0 + np.round(issue * S).astype(np.int64),
        T0 + np.round((issue + lat) * S).astype(np.int64),
        np.ones(issue.size, dtype=np.int64),
    )


@pytest.fixture
def run():
    rng = np.random.default_rng(11)
    sig = Bursty.random(rng, 80.0)
    gpu0 = gpu_instant_trace(sig, T0, noise=0.0, rng=rng)
    g1 = np.arange(0.0, 80.0 + 1e-9, 0.1)
    gpu1 = Trace(
        T0 + np.round(g1 * S).astype(np.int64), 3e4 + 60.0 * g1, Semantics.COUNTER, S // 10
    )
    ac = analyzer_trace(sig, T0, 0.7, rest_w=150.0 + 60.0, noise=0.0, rng=rng)
    q = single_stream_queries(rng, 10.0, 70.0)
    return sig, gpu0, gpu1, ac, q


def test_result_has_the_contract_shape_and_true_figures(run):
    sig, gpu0, gpu1, ac, q = run
    win = Window.of_queries(q)
    a_s, b_s = (win.start_ns - T0) / S, (win.end_ns - T0) / S
    sources = [
        SourceInput("gpu0", "nvml", gpu0, idle_w=80.0),
        SourceInput("gpu1", "nvml", gpu1, idle_w=60.0, update_period_ns=S // 10),
        SourceInput("ac", "analyzer", ac),
    ]
    out = analyze(
        sources,
        Workload.of_queries(Scenario.SINGLE_STREAM, q),
        win,
        identity={"run_id": "r1", "backend": "onnxruntime", "host": "h"},
        options=AnalysisOptions(align_auto=True),
    )
    r = json.loads(json.dumps(out.result))  # JSON-ready, no numpy scalars
    assert set(r) == KEYS
    assert r["schema_version"] == 1 and r["scenario"] == "single-stream"
    assert set(r["power"]) == {"gpu0", "gpu1", "gpus", "ac"}
    for src in r["power"].values():
        assert set(src) >= POWER_KEYS
    for eff in r["efficiency"].values():
        assert set(eff) >= EFF_KEYS

    truth0 = float(sig.energy(np.array([a_s]), np.array([b_s]))[0])
    dur = b_s - a_s
    assert r["power"]["gpu0"]["energy_joules"] == pytest.approx(truth0, rel=1e-3)
    assert r["power"]["gpu1"]["energy_joules"] == pytest.approx(60.0 * dur, rel=1e-9)
    assert r["power"]["gpus"]["energy_joules"] == pytest.approx(truth0 + 60.0 * dur, rel=2e-3)
    # the analyzer was 0.7 s ahead; after auto alignment its energy matches the truth
    assert r["power"]["ac"]["clock_offset_ms"] == pytest.approx(700.0, abs=20.0)
    assert r["power"]["ac"]["energy_joules"] == pytest.approx(truth0 + 210.0 * dur, rel=5e-3)
    assert r["power"]["gpu1"]["mlperf_average_watts"] is None  # counter: the rule does not apply
    assert r["power"]["gpus"]["idle_watts"] == pytest.approx(140.0)

    perf = r["performance"]
    assert perf["queries"] == len(q) and perf["samples"] == len(q)
    assert perf["samples_per_second"] == pytest.approx(len(q) / dur)
    assert 4.0 <= perf["latency_ms"]["p50"] <= 4.4

    e1 = r["efficiency"]["gpu1"]
    assert e1["joules_per_query"] == pytest.approx(60.0 * dur / len(q), rel=1e-9)
    assert e1["samples_per_second_per_watt"] == pytest.approx(1 / 60.0 * len(q) / dur, rel=1e-9)
    assert e1["dynamic_joules_per_query"] == pytest.approx(0.0, abs=1e-9)
    assert e1["per_query_joules"]["p50"] == pytest.approx(60.0 * 0.0042, rel=0.06)
    ac_eff = r["efficiency"]["ac"]
    mlperf_w = r["power"]["ac"]["mlperf_average_watts"]
    assert ac_eff["millijoules_per_query_mlperf"] == pytest.approx(
        mlperf_w * dur * 1000 / len(q), rel=1e-12
    )
    assert any("apportioning estimate" in p for p in r["problems"])
    assert r["status"] == "ok"


def test_an_unplugged_analyzer_degrades_the_result_and_lists_the_gap(run):
    _, gpu0, _, ac, q = run
    keep = ((ac.t_ns - T0) / S < 30.0) | ((ac.t_ns - T0) / S > 36.0)
    cut = Trace(ac.t_ns[keep], ac.values[keep], ac.semantics, ac.nominal_period_ns)
    out = analyze(
        [
            SourceInput("gpu0", "nvml", gpu0),
            SourceInput(
                "ac", "analyzer", cut, offset=OffsetEstimate(700_000_000, 5_000_000, "given")
            ),
        ],
        Workload.of_queries(Scenario.SINGLE_STREAM, q),
        Window.of_queries(q),
        identity={"run_id": "r2"},
    )
    r = out.result
    assert r["status"] == "degraded"
    assert r["power"]["ac"]["coverage"] < 0.95
    assert r["power"]["ac"]["gaps"] and r["power"]["ac"]["gaps"][0]["duration_s"] == pytest.approx(
        6.0, abs=0.01
    )
    assert any(p.startswith("ac: 1 gap(s)") for p in r["problems"])
    assert r["power"]["gpu0"]["coverage"] == pytest.approx(1.0)


def test_loadgen_counts_without_a_query_log_multistream():
    t = T0 + np.arange(0, 21) * S
    ac = Trace(t, np.full(21, 500.0), Semantics.INTERVAL_MEAN, S)
    win = Window(T0 + 2 * S, T0 + 12 * S)
    out = analyze(
        [SourceInput("ac", "analyzer", ac)],
        Workload.of_counts(Scenario.MULTI_STREAM, 100, {"p50": 5e6, "p90": 6e6, "p99": 9e6}),
        win,
        identity={"run_id": "r3"},
    )
    r = out.result
    assert r["performance"]["samples"] == 800
    assert r["performance"]["latency_ms"] == {"p50": 5.0, "p90": 6.0, "p99": 9.0}
    # MLPerf: mean of samples strictly inside (2, 12) = 500 W; 500 * 10 s * 1000 / 100 queries
    assert r["efficiency"]["ac"]["millijoules_per_query_mlperf"] == pytest.approx(50_000.0)
    assert r["efficiency"]["ac"]["per_query_joules"] is None
    assert r["power"]["ac"]["energy_joules"] == pytest.approx(5000.0)


def test_offline_has_no_mlperf_millijoules_and_reports_samples_per_watt():
    t = T0 + np.arange(0, 21) * S
    ac = Trace(t, np.full(21, 400.0), Semantics.INTERVAL_MEAN, S)
    q = QueryLog(np.array([T0 + 2 * S]), np.array([T0 + 12 * S]), np.array([40_000]))
    r = analyze(
        [SourceInput("ac", "analyzer", ac)],
        Workload.of_queries(Scenario.OFFLINE, q),
        Window.of_queries(q),
        identity={"run_id": "r4"},
    ).result
    assert r["efficiency"]["ac"]["millijoules_per_query_mlperf"] is None
    assert r["efficiency"]["ac"]["samples_per_second_per_watt"] == pytest.approx(4000 / 400)


def test_no_sample_inside_the_window_is_an_error():
    t = T0 + np.arange(0, 5) * S
    ac = Trace(t, np.full(5, 100.0), Semantics.INTERVAL_MEAN, S)
    with pytest.raises(AnalysisError, match="no power source"):
        analyze(
            [SourceInput("ac", "analyzer", ac)],
            Workload.of_counts(Scenario.OFFLINE, 1, sample_count=10),
            Window(T0 + 100 * S, T0 + 110 * S),
            identity={"run_id": "r5"},
        )


def test_align_auto_without_a_gpu_is_an_error():
    t = T0 + np.arange(0, 5) * S
    ac = Trace(t, np.full(5, 100.0), Semantics.INTERVAL_MEAN, S)
    with pytest.raises(AnalysisError, match="needs a GPU"):
        analyze(
            [SourceInput("ac", "analyzer", ac)],
            Workload.of_counts(Scenario.OFFLINE, 1, sample_count=10),
            Window(T0 + S, T0 + 3 * S),
            identity={"run_id": "r6"},
            options=AnalysisOptions(align_auto=True),
        )
