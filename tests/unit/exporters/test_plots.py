"""Per-run plots: log axes for the histograms, titles that say only what is known."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pytest

from infergy.core.trace import NS_PER_S, QueryLog, Semantics, Trace
from infergy.exporters.plots import draw_run_plots, log_histogram, plot_title

mpl.use("Agg", force=True)
import matplotlib.pyplot as plt

T0 = 1_750_000_000 * NS_PER_S


def _heavy_tailed(n: int = 5_000) -> np.ndarray:
    """Latencies like a SingleStream run's: most near 0.07 ms, 1 % at 1-12 ms."""
    rng = np.random.default_rng(3)
    body = rng.lognormal(np.log(0.07), 0.2, n)
    body[: n // 100] = rng.uniform(1.0, 12.0, n // 100)
    return body


def test_a_heavy_tail_is_drawn_on_log_axes_with_its_body_spread_over_bins() -> None:
    values = _heavy_tailed()
    fig, ax = plt.subplots()
    try:
        assert log_histogram(ax, values, "tab:blue") is None
        assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
        counts = np.array([p.get_height() for p in ax.patches])
        # on a linear axis 99 % of the queries fell into the first of 70 bins; here the body
        # spreads over many bins and no bin holds most of the queries
        assert np.count_nonzero(counts) > 20
        assert counts.max() < 0.5 * values.size
    finally:
        plt.close(fig)


def test_values_a_log_axis_cannot_show_are_counted_not_dropped_silently() -> None:
    fig, ax = plt.subplots()
    try:
        note = log_histogram(ax, np.array([0.0, 0.0, 1.0, 2.0, np.nan]), "tab:orange")
        assert note == "2 queries <= 0 not shown"
    finally:
        plt.close(fig)


@pytest.mark.parametrize(
    ("result", "title"),
    [
        (
            {"run_id": "r1", "scenario": "offline", "backend": "torch", "model": "resnet50",
             "precision": "fp16", "batch_size": 256, "status": "ok"},
            "r1  offline  torch/resnet50  fp16  batch 256  [ok]",
        ),
        (  # an analysed recording: no backend, model, precision or batch (was "None/None")
            {"run_id": "r2", "scenario": "single-stream", "backend": None, "model": None,
             "precision": None, "batch_size": None, "status": "degraded",
             "provenance": {"command": "analyze"}},
            "r2  single-stream  analysed recordings  [degraded]",
        ),
    ],
)  # fmt: skip
def test_titles_say_only_what_the_result_knows(result: dict[str, object], title: str) -> None:
    assert plot_title(result) == title


def test_the_three_plots_are_written(tmp_path: Path) -> None:
    t = T0 + np.arange(200, dtype=np.int64) * 100_000_000
    traces = {"ac": Trace(t, np.full(200, 150.0), Semantics.INTERVAL_MEAN, 100_000_000)}
    latency_ns = (_heavy_tailed(1_000) * 1e6).astype(np.int64)
    issue = T0 + NS_PER_S + np.arange(1_000, dtype=np.int64) * 15_000_000
    queries = QueryLog(issue, issue + latency_ns, np.ones(1_000, dtype=np.int64))
    result = {"run_id": "r3", "scenario": "single-stream", "status": "ok",
              "window": {"start_unix_ns": int(issue[0]), "end_unix_ns": int(queries.complete_ns.max())},
              "power": {"ac": {"kind": "analyzer", "simulated": True}}}  # fmt: skip
    written = draw_run_plots(tmp_path, result, traces, queries)
    assert [p.name for p in written] == ["power.png", "per_query_energy.png", "latency.png"]
    assert all(p.stat().st_size > 10_000 for p in written)


def test_a_generative_run_adds_the_phase_plot(tmp_path: Path) -> None:
    t = T0 + np.arange(200, dtype=np.int64) * 100_000_000
    power = np.where(np.arange(200) % 20 < 5, 300.0, 200.0)  # prefill bursts, then decode
    traces = {"gpu0": Trace(t, power, Semantics.INTERVAL_MEAN, 100_000_000)}
    share = (np.arange(100) % 10 < 2).astype(float)
    result = {"run_id": "r4", "scenario": "offline", "status": "ok",
              "window": {"start_unix_ns": T0, "end_unix_ns": T0 + 20 * NS_PER_S},
              "power": {"gpu0": {"kind": "nvml", "simulated": True}},
              "generative": {"timeline": {"start_unix_ns": T0, "bin_s": 0.2,
                                          "prefill_share": share.tolist(),
                                          "decode_share": (1 - share).tolist()}}}  # fmt: skip
    written = draw_run_plots(tmp_path, result, traces, None)
    assert [p.name for p in written] == ["power.png", "llm_phases.png"]
    assert written[1].stat().st_size > 10_000
