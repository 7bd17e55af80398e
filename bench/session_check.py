"""Independent check of a run's counter-based J/query (issue 6 acceptance).

Recomputes joules per query from the raw NVML energy-counter trace the run wrote
(``traces/gpu<i>.csv``: t_ns,joules) and its query log, with plain numpy — no infergy code:
window = [first issue, last completion], energy = counter linearly interpolated at the two
edges, J/query = energy / queries. Compares with ``efficiency.gpu<i>.joules_per_query`` of
``result.json`` (target: within 1 %).

Usage: python bench/session_check.py RUN_DIR [RUN_DIR...] [--out check.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np


def check(run_dir: Path) -> dict[str, object]:
    result = json.loads((run_dir / "result.json").read_text())
    with (run_dir / "queries.csv").open() as f:
        rows = list(csv.DictReader(f))
    issue = np.array([int(r["issue_ns"]) for r in rows], dtype=np.int64)
    complete = np.array([int(r["complete_ns"]) for r in rows], dtype=np.int64)
    start, end = int(issue.min()), int(complete.max())
    out: dict[str, object] = {
        "run_id": result["run_id"],
        "scenario": result["scenario"],
        "queries": len(rows),
        "window_s": (end - start) / 1e9,
    }
    for trace in sorted((run_dir / "traces").glob("gpu[0-9]*.csv")):
        if "." in trace.stem:  # gpu0.samples etc.: not counters
            continue
        with trace.open() as f:
            reader = csv.reader(f)
            header = next(reader)
            if header[1] != "joules":
                continue
            data = np.array([[float(a), float(b)] for a, b, *_ in reader])
        t, j = data[:, 0], data[:, 1]
        ok = np.isfinite(j)
        t, j = t[ok], j[ok]
        if np.any(np.diff(j) < 0):
            out[trace.stem] = {"error": "counter reset inside the trace: not handled by this check"}
            continue
        energy = float(np.interp(end, t, j) - np.interp(start, t, j))
        independent = energy / len(rows)
        reported = result["efficiency"][trace.stem]["joules_per_query"]
        out[trace.stem] = {
            "independent_j_per_query": independent,
            "reported_j_per_query": reported,
            "ratio": reported / independent,
            "within_1pct": abs(reported / independent - 1) < 0.01,
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results = [check(r) for r in args.runs]
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return (
        0
        if all(
            v.get("within_1pct", True) for r in results for v in r.values() if isinstance(v, dict)
        )
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
