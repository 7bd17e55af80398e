"""The analysis of an anchored counter source (``SourceInput.samples``) against analytic truth.

A GPU's energy counter read every ~1 s (every 100 ms within 0.5 s of the window's edges) and
its 20-ms samples through a sensor whose gain is not the counter's: the result must report the
counter-true energy with an uncertainty that covers the error, per-query energies at the
samples' resolution, the reads and the samples counted apart, and the drift as a note.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from infergy.core.analysis import analyze
from infergy.core.inputs import SourceInput, Workload, pair_samples
from infergy.core.trace import QueryLog, Scenario, Semantics, Trace, Window
from tests.unit.core.anchored_truth import (
    DURATION_S,
    H_NS,
    S,
    counter_trace,
    periodic_bursts,
    read_times_ns,
    rel_s,
    samples_trace,
    single_stream,
    to_ns,
    truth_j,
)

BUSY_W, IDLE_W = 650.0, 85.0


def burst_queries(sig, lo_s: float = 5.0, hi_s: float = DURATION_S - 5.0) -> QueryLog:
    """One query per busy stretch of the truth (its true energy: that stretch's)."""
    start = sig.edges_s[:-1][sig.level_w > IDLE_W + 1]
    end = sig.edges_s[1:][sig.level_w > IDLE_W + 1]
    keep = (start > lo_s) & (end < hi_s)
    return QueryLog(to_ns(start[keep]), to_ns(end[keep]), np.ones(int(keep.sum()), np.int64))


def gpu_sources(name: str, sig, rng, queries: QueryLog, *, gain: float, noise: float = 0.01):
    win = Window.of_queries(queries)
    edges_s = tuple(float(x) for x in rel_s(np.array([win.start_ns, win.end_ns])))
    reads = read_times_ns(rng, dense_at_s=edges_s)
    counter = counter_trace(sig.energy, reads)
    samples = samples_trace(sig.power, rng, gain=gain, noise=noise)
    return [
        SourceInput(name, "nvml", counter, update_period_ns=S // 10),
        SourceInput(name + ".samples", "nvml", samples, update_period_ns=H_NS),
    ]


def run(sources, queries, scenario=Scenario.SINGLE_STREAM):
    out = analyze(
        pair_samples(sources),
        Workload.of_queries(scenario, queries),
        Window.of_queries(queries),
        identity={"run_id": "anchored"},
    )
    return out, json.loads(json.dumps(out.result))


def test_a_biased_sensor_still_gives_the_counter_true_energy_and_is_flagged_as_a_note():
    rng = np.random.default_rng(3)
    sig = periodic_bursts(BUSY_W, IDLE_W, 0.05)
    q = burst_queries(sig)
    sources = gpu_sources("gpu0", sig, rng, q, gain=0.97)
    _, r = run(sources, q)
    win = Window.of_queries(q)
    truth = truth_j(sig.energy, win.start_ns, win.end_ns)
    p = r["power"]["gpu0"]
    err = abs(p["energy_joules"] - truth)
    assert err <= 1e-3 * truth, f"anchored energy off by {err / truth:.3%} (target 0.1 %)"
    assert err <= p["uncertainty_joules"], (err, p["uncertainty_parts_joules"])
    assert p["coverage"] == pytest.approx(1.0)
    assert r["status"] == "ok", "a drifting sensor must not degrade a counter-true result"
    parts = p["uncertainty_parts_joules"]
    assert parts["shape_joules"] is not None and parts["analyzer_joules"] is None
    block = p["anchoring"]
    assert block["drifted"] is True
    scale = block["scale"]
    assert abs(scale["scale"] - 1 / 0.97) <= 3 * scale["scale_uncertainty"], scale
    assert any("gpu0.samples disagree with the counter" in n for n in r["problems"])
    assert not any("disagree" in n and not n.startswith("note:") for n in r["problems"])
    agreement = r["power"]["gpu0.samples"]["counter_agreement"]
    assert agreement["drifted"] is True and agreement["counter_source"] == "gpu0"
    # the samples source alone is off by its gain: that is why it is flagged
    assert r["power"]["gpu0.samples"]["energy_joules"] == pytest.approx(0.97 * truth, rel=0.01)


def test_reads_and_samples_are_counted_apart_and_the_raw_counter_is_kept():
    rng = np.random.default_rng(4)
    sig = periodic_bursts(BUSY_W, IDLE_W, 0.11)
    q = burst_queries(sig)
    sources = gpu_sources("gpu0", sig, rng, q, gain=1.0)
    out, r = run(sources, q)
    win = Window.of_queries(q)
    counter, samples = sources[0].trace, sources[1].trace
    reads_in = int(np.count_nonzero((counter.t_ns >= win.start_ns) & (counter.t_ns <= win.end_ns)))
    samples_in = int(
        np.count_nonzero((samples.t_ns >= win.start_ns) & (samples.t_ns <= win.end_ns))
    )
    p = r["power"]["gpu0"]
    assert p["samples"] == reads_in, "samples must count the counter's reads, not curve knots"
    assert p["anchoring"]["counter_reads"] == reads_in
    assert p["anchoring"]["samples"] == samples_in
    assert 0.8 <= p["anchoring"]["counter_read_interval_s"] <= 1.2  # sparse: ~1 s
    assert p["anchoring"]["drifted"] is False
    assert not any("disagree" in n for n in r["problems"])
    # the store keeps what was recorded; the curve is what the figures used
    assert np.array_equal(out.traces["gpu0"].t_ns, counter.t_ns)
    assert out.traces["gpu0"].semantics is Semantics.COUNTER
    assert len(out.anchored["gpu0"].trace) > 10 * len(counter)


def test_per_query_energy_resolves_each_burst_and_is_not_called_an_estimate():
    rng = np.random.default_rng(5)
    sig = periodic_bursts(BUSY_W, IDLE_W, 0.05)
    q = burst_queries(sig)
    plain = gpu_sources("gpu0", sig, rng, q, gain=0.97)
    _, anchored = run(plain, q)
    _, counter_only = run(plain[:1], q)
    truth = BUSY_W * 0.2
    got = anchored["efficiency"]["gpu0"]["per_query_joules"]
    # 20-ms instants smooth each step over one sample period: a few % at 200-ms queries
    assert got["p50"] == pytest.approx(truth, rel=0.05), got
    assert got["p99"] == pytest.approx(truth, rel=0.05), got
    bare = counter_only["efficiency"]["gpu0"]["per_query_joules"]
    assert abs(bare["p50"] / truth - 1) > 3 * abs(got["p50"] / truth - 1), (bare, got)
    # 20-ms resolution against 200-ms queries: fine enough; the sparse counter alone is not
    notes = [n for n in anchored["problems"] if "apportioning estimate" in n]
    assert not any("gpu0," in n or "gpu0 " in n for n in notes), notes
    assert any("gpu0" in n for n in counter_only["problems"] if "apportioning" in n)


def test_the_gpu_sum_of_two_anchored_gpus_is_the_sum_of_their_true_energies():
    rng = np.random.default_rng(6)
    sig0 = periodic_bursts(BUSY_W, IDLE_W, 0.05)
    sig1 = periodic_bursts(400.0, 60.0, 0.13)
    q = burst_queries(sig0)
    sources = gpu_sources("gpu0", sig0, rng, q, gain=0.97) + gpu_sources(
        "gpu1", sig1, rng, q, gain=1.02
    )
    _, r = run(sources, q)
    win = Window.of_queries(q)
    truth = truth_j(sig0.energy, win.start_ns, win.end_ns) + truth_j(
        sig1.energy, win.start_ns, win.end_ns
    )
    gpus = r["power"]["gpus"]
    assert gpus["energy_joules"] == pytest.approx(truth, rel=1e-3)
    assert gpus["energy_joules"] == pytest.approx(
        r["power"]["gpu0"]["energy_joules"] + r["power"]["gpu1"]["energy_joules"], rel=1e-4
    )


def test_millisecond_queries_fall_back_to_the_counter_and_say_the_split_is_coarse():
    """Aliased 20-ms instants of ms queries: shape weights ~0, resolution the read interval."""
    rng = np.random.default_rng(7)
    sig = single_stream(rng)
    busy = sig.level_w > 200
    start, end = sig.edges_s[:-1][busy], sig.edges_s[1:][busy]
    keep = (start > 5.0) & (end < DURATION_S - 5.0)
    q = QueryLog(to_ns(start[keep]), to_ns(end[keep]), np.ones(int(keep.sum()), np.int64))
    sources = gpu_sources("gpu0", sig, rng, q, gain=1.0, noise=0.0)
    _, r = run(sources, q)
    win = Window.of_queries(q)
    truth = truth_j(sig.energy, win.start_ns, win.end_ns)
    p = r["power"]["gpu0"]
    assert abs(p["energy_joules"] - truth) <= 1e-3 * truth
    assert abs(p["energy_joules"] - truth) <= p["uncertainty_joules"]
    assert p["anchoring"]["median_shape_weight"] < 0.5
    assert p["anchoring"]["effective_resolution_ms"] == pytest.approx(1000.0, rel=0.2)
    notes = [n for n in r["problems"] if "apportioning estimate" in n]
    assert notes and "gpu0" in notes[0] and "vs median query latency" in notes[0], notes


def test_only_a_counter_with_power_samples_is_paired():
    t = np.arange(5, dtype=np.int64) * S
    counter = Trace(t, np.arange(5.0), Semantics.COUNTER, S)
    power = Trace(t, np.ones(5), Semantics.INSTANT, S)
    paired = pair_samples(
        [SourceInput("gpu0", "nvml", counter), SourceInput("gpu0.samples", "nvml", power)]
    )
    assert paired[0].samples is power and paired[1].samples is None
    alone = pair_samples(
        [SourceInput("gpu0", "nvml", power), SourceInput("gpu0.samples", "nvml", power)]
    )
    assert alone[0].samples is None, "a GPU without a counter has nothing to anchor"
    assert pair_samples([SourceInput("gpu0", "nvml", counter)])[0].samples is None


def test_a_sparse_counter_alone_is_as_uncertain_as_its_read_interval_says():
    """Without its samples, a counter read every ~1 s: the edge term is the read interval's."""
    rng = np.random.default_rng(8)
    sig = periodic_bursts(BUSY_W, IDLE_W, 0.05)
    q = burst_queries(sig)
    counter = counter_trace(sig.energy, read_times_ns(rng))  # no dense edges
    _, r = run([SourceInput("gpu0", "nvml", counter, update_period_ns=S // 10)], q)
    win = Window.of_queries(q)
    p = r["power"]["gpu0"]
    err = abs(p["energy_joules"] - truth_j(sig.energy, win.start_ns, win.end_ns))
    assert err <= p["uncertainty_joules"], (err, p["uncertainty_parts_joules"])
    # a 100-ms edge term would claim ~10x less than the ~1-s read intervals allow
    assert p["uncertainty_parts_joules"]["edges_joules"] > 0.3 * BUSY_W * 0.5
