"""Regenerate ``examples/single-stream/``: a real LoadGen run with SIMULATED power recordings.

What is real: the MLPerf LoadGen SingleStream run (``mlperf_log_detail.txt``,
``mlperf_log_summary.txt``) of a small numpy workload on this machine's CPU, and the query log
(``queries.csv``: every query's issue and completion time, taken in the SUT's callbacks).

What is simulated (a power model driven by that query log, never a measurement): two "GPUs"
(``gpu0_energy.csv``: an NVML-style energy counter at 10 Hz with 1 mJ steps; ``gpu1_power.csv``:
20 ms instant power samples) and a wall analyzer (``ptd_log.txt``: a PTDaemon ``-l`` log at 1 Hz
whose clock runs 0.7 s ahead, so ``--align auto`` has something to find). Sampling starts 8 s
before the run (the idle baseline) and ends 3 s after it.

Usage:
    python examples/make_examples.py [--duration 20] [--out examples/single-stream]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import mlperf_loadgen as lg
import numpy as np

from infergy.core.trace import NS_PER_S, QueryLog, Semantics, Trace
from infergy.formats.csv import format_queries_csv, format_trace_csv
from infergy.formats.ptd import format_sample_line, format_status_line

IDLE_BEFORE_S = 8.0
TAIL_S = 3.0
AC_CLOCK_AHEAD_S = 0.7
SIZES = (96, 128, 192, 256)
SIM_NOTE = "SIMULATED GPU power (infergy examples/make_examples.py): not a measurement"


def run_loadgen(duration_s: float, outdir: Path) -> tuple[QueryLog, np.ndarray]:
    """A real SingleStream run; returns the query log and each query's work size."""
    rng = np.random.default_rng(0)
    mats = {n: rng.standard_normal((n, n)).astype(np.float32) for n in SIZES}
    issued: list[int] = []
    done: list[int] = []
    size_of: list[int] = []

    # The work per query changes in phases of 0.4-2.5 s, so power varies at the scale an
    # analyzer sees (what --align auto needs), as a real service's load would.
    phase_s = np.cumsum(rng.uniform(0.4, 2.5, 1000))
    phase_size = rng.choice(SIZES, phase_s.size)
    t_start = time.time_ns()

    def issue(samples: list[lg.QuerySample]) -> None:
        try:
            t_issue = time.time_ns()
            phase = int(np.searchsorted(phase_s, (t_issue - t_start) / NS_PER_S))
            n = int(phase_size[min(phase, phase_size.size - 1)])
            a = mats[n]
            for _ in range(3):
                a = np.tanh(a @ mats[n] * 0.01)
            issued.append(t_issue)
            size_of.append(n)
            done.append(time.time_ns())
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples])
        except Exception as e:  # an exception escaping into LoadGen segfaults the process
            print("SUT error:", e)

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(1024, 1024, lambda _s: None, lambda _s: None)
    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.SingleStream
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_duration_ms = int(duration_s * 1000)
    settings.max_duration_ms = int(duration_s * 1000) + 5000
    settings.min_query_count = 100
    settings.single_stream_expected_latency_ns = 500_000
    out = lg.LogOutputSettings()
    out.outdir = str(outdir)  # must exist, or LoadGen aborts at exit
    out.copy_summary_to_stdout = False
    log = lg.LogSettings()
    log.log_output = out
    log.enable_trace = False
    lg.StartTestWithLogSettings(sut, qsl, settings, log)
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    q = QueryLog(np.array(issued), np.array(done), np.ones(len(issued), dtype=np.int64))
    return q, np.array(size_of, dtype=np.float64)


class StepPower:
    """Piecewise-constant power with an exact cumulative integral (the simulated truth)."""

    def __init__(self, edges_ns: np.ndarray, level_w: np.ndarray) -> None:
        self.edges_ns, self.level_w = edges_ns, level_w
        seg_j = np.diff(edges_ns) / NS_PER_S * level_w[:-1]
        self.cum_j = np.concatenate(([0.0], np.cumsum(seg_j)))

    def energy_to(self, t_ns: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(self.edges_ns, t_ns, side="right") - 1, 0, None)
        return self.cum_j[i] + (t_ns - self.edges_ns[i]) / NS_PER_S * self.level_w[i]

    def at(self, t_ns: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(self.edges_ns, t_ns, side="right") - 1, 0, None)
        return self.level_w[i]


def gpu_model(q: QueryLog, work: np.ndarray, start: int, idle_w: float, busy_w: float) -> StepPower:
    """Idle between queries; during a query, idle + busy scaled by the query's work."""
    edges = np.concatenate(([start], np.column_stack((q.issue_ns, q.complete_ns)).ravel()))
    busy = idle_w + busy_w * (work / max(SIZES)) ** 1.5
    levels = np.concatenate(([idle_w], np.column_stack((busy, np.full(len(q), idle_w))).ravel()))
    return StepPower(edges, levels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0, help="LoadGen min duration, s")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "single-stream")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        q, work = run_loadgen(args.duration, Path(tmp))
        for name in ("mlperf_log_detail.txt", "mlperf_log_summary.txt"):
            (args.out / name).write_bytes((Path(tmp) / name).read_bytes())
    (args.out / "queries.csv").write_text(format_queries_csv(q))

    rng = np.random.default_rng(1)
    start = int(q.issue_ns.min() - IDLE_BEFORE_S * NS_PER_S)
    end = int(q.complete_ns.max() + TAIL_S * NS_PER_S)
    g0 = gpu_model(q, work, start, idle_w=62.0, busy_w=240.0)
    g1 = gpu_model(q, work, start, idle_w=48.0, busy_w=170.0)

    t0 = np.arange(start, end, NS_PER_S // 10, dtype=np.int64) + 3_000_000
    joules = np.floor((g0.energy_to(t0) + 123_456.789) * 1000) / 1000  # counter in 1 mJ steps
    (args.out / "gpu0_energy.csv").write_text(
        format_trace_csv(Trace(t0, joules, Semantics.COUNTER, NS_PER_S // 10), note=SIM_NOTE)
    )
    t1 = np.arange(start, end, NS_PER_S // 50, dtype=np.int64) + 7_000_000
    w1 = g1.at(t1) * (1 + 0.01 * rng.standard_normal(t1.size))
    (args.out / "gpu1_power.csv").write_text(
        format_trace_csv(Trace(t1, w1, Semantics.INSTANT, NS_PER_S // 50), note=SIM_NOTE)
    )

    # Wall analyzer: 1-s means of both GPUs plus the rest of the box, on a clock 0.7 s ahead.
    ta = np.arange(start + NS_PER_S, end, NS_PER_S, dtype=np.int64)
    rest = 185.0
    watts = (
        (g0.energy_to(ta) - g0.energy_to(ta - NS_PER_S))
        + (g1.energy_to(ta) - g1.energy_to(ta - NS_PER_S))
        + rest
    ) * (1 + 0.002 * rng.standard_normal(ta.size))
    volts = 230.0 + 0.4 * rng.standard_normal(ta.size)
    pf = 0.96
    ahead = round(AC_CLOCK_AHEAD_S * NS_PER_S)
    lines = [
        format_status_line(ta[0] + ahead - 900_000_000, "NOTICE", "SIMULATED analyzer (infergy "
                           "examples/make_examples.py): not a measurement"),
    ]  # fmt: skip
    lines += [
        format_sample_line(int(t + ahead), w, v, w / (v * pf), pf, mark="example_testing")
        for t, w, v in zip(ta, watts, volts, strict=True)
    ]
    (args.out / "ptd_log.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}: {len(q)} queries, {ta.size} analyzer samples")


if __name__ == "__main__":
    main()
