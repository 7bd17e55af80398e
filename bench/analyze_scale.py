"""Scale benchmark of the analysis core (issue: foundation).

One hour of 8 GPU sources at 50 Hz (instant), an analyzer at 1 Hz (interval mean, 0.7 s ahead,
aligned automatically) and 1 M Server-scenario queries: the full ``infergy.core.analyze`` call,
with the GPU sum, cross-correlation alignment, MLPerf and time-weighted figures, per-query
apportioning for every source and uncertainty. Each repetition runs in a fresh process that
first generates the data, then times the analysis and reads the process's peak RSS.

Usage:
    python bench/analyze_scale.py [--repeat 5] [--json]

Target (issue 2): <= 2 s and <= 1 GB peak RSS on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

HOUR_S = 3600.0
GPUS = 8
GPU_HZ = 50
QUERIES = 1_000_000
T0 = 1_750_000_000 * 1_000_000_000


def one_run() -> dict[str, float]:
    from infergy.core.analysis import analyze
    from infergy.core.inputs import AnalysisOptions, SourceInput, Workload
    from infergy.core.trace import NS_PER_S, QueryLog, Scenario, Semantics, Trace, Window

    rng = np.random.default_rng(42)
    n = int(HOUR_S * GPU_HZ) + 1
    t = T0 + np.arange(n, dtype=np.int64) * (NS_PER_S // GPU_HZ)
    # bursty load shared by all GPUs (so the analyzer has something to align on), plus noise
    bursts = np.repeat(rng.uniform(80.0, 650.0, n // 25 + 1), 25)[:n]
    gpus = [
        Trace(t, bursts * rng.uniform(0.95, 1.05) + rng.normal(0, 5, n), Semantics.INSTANT,
              NS_PER_S // GPU_HZ)
        for _ in range(GPUS)
    ]  # fmt: skip
    ta = T0 + np.arange(1, int(HOUR_S) + 1, dtype=np.int64) * NS_PER_S
    per_s = bursts[: (n - 1)].reshape(-1, GPU_HZ).mean(axis=1)[: ta.size]
    ac_w = GPUS * per_s + 300.0 + rng.normal(0, 2, ta.size)
    ac = Trace(ta + 700_000_000, ac_w, Semantics.INTERVAL_MEAN, NS_PER_S,
               uncertainty=np.full(ta.size, 0.004))  # fmt: skip
    issue = np.sort(T0 + 5 * NS_PER_S + rng.integers(0, int((HOUR_S - 10) * NS_PER_S), QUERIES))
    lat = rng.exponential(8e6, QUERIES).astype(np.int64) + 1_000_000
    q = QueryLog(issue, issue + lat, np.ones(QUERIES, dtype=np.int64))
    sources = [SourceInput(f"gpu{i}", "nvml", g, idle_w=70.0) for i, g in enumerate(gpus)]
    sources.append(SourceInput("ac", "analyzer", ac))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    out = analyze(
        sources,
        Workload.of_queries(Scenario.SERVER, q),
        Window.of_queries(q),
        identity={"run_id": "bench"},
        options=AnalysisOptions(align_auto=True),
    )
    elapsed = time.perf_counter() - start
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    off = out.result["power"]["ac"]["clock_offset_ms"]
    return {
        "analysis_s": elapsed,
        "peak_rss_mb": rss_after / 1024,
        "rss_before_analysis_mb": rss_before / 1024,
        "gpu_samples_total": float(GPUS * n),
        "ac_offset_found_ms": float(off) if off is not None else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one_run()))
        return
    runs = []
    for _ in range(args.repeat):
        out = subprocess.run(
            [sys.executable, __file__, "--child"], check=True, capture_output=True, text=True
        )
        runs.append(json.loads(out.stdout))
    summary = {
        "median_analysis_s": statistics.median(r["analysis_s"] for r in runs),
        "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "runs": runs,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}",
        "numpy": np.__version__,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        each = ", ".join(f"{r['analysis_s']:.3f}" for r in runs)
        print(
            f"analysis: median {summary['median_analysis_s']:.3f} s over {len(runs)} runs ({each})"
        )
        print(f"peak RSS: median {summary['median_peak_rss_mb']:.0f} MB "
              f"(data alone: {runs[0]['rss_before_analysis_mb']:.0f} MB)")  # fmt: skip
        print(f"ac offset found: {runs[0]['ac_offset_found_ms']:.1f} ms (true 700.0)")
        print(summary["machine"], "numpy", summary["numpy"])


if __name__ == "__main__":
    main()
