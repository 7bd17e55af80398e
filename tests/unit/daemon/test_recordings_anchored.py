"""A stored GPU run analysed again, and redrawn: ``gpu0`` with ``gpu0.samples`` is anchored.

Stores and files keep the raw counter and samples (``traces/gpu0.csv``, ``gpu0.samples.csv``);
``infergy analyze`` and the plots rebuild the anchored curve from them.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from infergy.cli.console import render_result
from infergy.config.settings import Settings
from infergy.core.trace import QueryLog, Window
from infergy.daemon.recordings import AnalyzeRequest, analyze_recordings
from infergy.errors import InputError
from infergy.exporters.plots import plotted_traces
from infergy.formats.csv import format_queries_csv, format_trace_csv
from tests.unit.core.anchored_truth import (
    counter_trace,
    periodic_bursts,
    read_times_ns,
    samples_trace,
    to_ns,
    truth_j,
)


def recorded(tmp_path: Path, gain: float = 0.97):
    rng = np.random.default_rng(9)
    sig = periodic_bursts(650.0, 85.0, 0.05)
    busy = sig.edges_s[:-1][sig.level_w > 100]
    busy = busy[(busy > 5.0) & (busy < 50.0)]
    q = QueryLog(to_ns(busy), to_ns(busy + 0.2), np.ones(busy.size, dtype=np.int64))
    counter = counter_trace(sig.energy, read_times_ns(rng))
    samples = samples_trace(sig.power, rng, gain=gain, noise=0.01)
    (tmp_path / "gpu0.csv").write_text(format_trace_csv(counter))
    (tmp_path / "gpu0.samples.csv").write_text(format_trace_csv(samples))
    (tmp_path / "queries.csv").write_text(format_queries_csv(q))
    return sig, q, counter, samples


def test_analyze_anchors_a_counter_given_with_its_samples(tmp_path: Path) -> None:
    sig, q, _, _ = recorded(tmp_path)
    req = AnalyzeRequest(
        power=[f"gpu0={tmp_path / 'gpu0.csv'}", f"gpu0.samples={tmp_path / 'gpu0.samples.csv'}"],
        queries=tmp_path / "queries.csv",
        scenario="single-stream",
    )
    r = analyze_recordings(req, Settings()).result
    win = Window.of_queries(q)
    truth = truth_j(sig.energy, win.start_ns, win.end_ns)
    gpu0 = r["power"]["gpu0"]
    assert gpu0["kind"] == "nvml" and r["power"]["gpu0.samples"]["kind"] == "nvml"
    assert gpu0["anchoring"]["drifted"] is True, gpu0["anchoring"]
    assert gpu0["energy_joules"] == pytest.approx(truth, rel=1e-3)
    assert r["efficiency"]["gpu0"]["per_query_joules"]["p50"] == pytest.approx(130.0, rel=0.05)


def test_a_samples_name_needs_its_kind(tmp_path: Path) -> None:
    recorded(tmp_path)
    req = AnalyzeRequest(
        power=[f"ac.samples={tmp_path / 'gpu0.samples.csv'}"],
        queries=tmp_path / "queries.csv",
        scenario="single-stream",
    )
    with pytest.raises(InputError, match="names no kind"):
        analyze_recordings(req, Settings())


def test_the_plots_draw_the_anchored_curve_from_the_stored_raw_traces(tmp_path: Path) -> None:
    _, _, counter, samples = recorded(tmp_path)
    drawn = plotted_traces({"gpu0": counter, "gpu0.samples": samples})
    curve = drawn["gpu0"]
    assert drawn["gpu0.samples"] is samples
    assert len(curve) > 10 * len(counter), "the counter was not anchored"
    at_reads = np.searchsorted(curve.t_ns, counter.t_ns)
    assert np.array_equal(curve.t_ns[at_reads], counter.t_ns)
    assert np.allclose(curve.values[at_reads], counter.values, rtol=0, atol=1e-9)
    assert plotted_traces({"gpu0": counter})["gpu0"] is counter  # no samples: as stored


def test_the_console_says_which_source_is_anchored_and_drifts(tmp_path: Path) -> None:
    recorded(tmp_path)
    req = AnalyzeRequest(
        power=[f"gpu0={tmp_path / 'gpu0.csv'}", f"gpu0.samples={tmp_path / 'gpu0.samples.csv'}"],
        queries=tmp_path / "queries.csv",
        scenario="single-stream",
    )
    r = analyze_recordings(req, Settings()).result
    buf = io.StringIO()
    render_result(Console(file=buf, width=200, color_system=None), r)
    rows = [line.split(maxsplit=1) for line in buf.getvalue().splitlines() if line.strip()]
    kinds = {name: rest for name, *more in rows for rest in more if "nvml" in rest}
    assert kinds["gpu0"].startswith("nvml, anchored (drift)"), buf.getvalue()
    assert "anchored" not in kinds["gpu0.samples"]
