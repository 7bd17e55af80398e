#!/usr/bin/env python3
"""Recompute the MLPerf Inference power metric from a copied run_1/ directory.

Standard library only. The rule follows the MLCommons submission checker
(tools/submission/submission_checker, power check):

  * power_begin / power_end: values of those keys in mlperf_log_detail.txt
    (format "%m-%d-%Y %H:%M:%S.%f").
  * samples: W (4th comma-separated field) of every spl.txt line that starts
    with "Time", whose timestamp (2nd field, same format) satisfies
    power_begin < ts < power_end (strict), and with W > 0.
  * avg = mean(samples)
  * SingleStream / MultiStream: energy per query in mJ
        avg * (power_end - power_begin).total_seconds() * 1000 / result_query_count
  * Offline / Server: average power in W = avg

Usage:
    python3 check_power_metric.py                 # checks both bundled runs
    python3 check_power_metric.py DIR [DIR ...]   # any dir with the 3 files
"""

import json
import os
import sys
from datetime import datetime

TS_FORMAT = "%m-%d-%Y %H:%M:%S.%f"
HERE = os.path.dirname(os.path.abspath(__file__))

# Published figures (summary_results.json of mlcommons/inference_results_v4.1,
# see SOURCE.md). Keyed by the directory name used in this example tree.
PUBLISHED = {
    "single-stream": ("29.2389869184", "millijoules"),
    "offline": ("398.3299847793", "Watts"),
}


def read_detail(path):
    """Return {key: value} for every ':::MLLOG {json}' line (last one wins)."""
    values = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.startswith(":::MLLOG "):
                continue
            entry = json.loads(line[len(":::MLLOG ") :])
            values[entry["key"]] = entry["value"]
    return values


def compute(run_dir):
    detail = read_detail(os.path.join(run_dir, "mlperf_log_detail.txt"))
    scenario = detail["effective_scenario"]
    power_begin = datetime.strptime(detail["power_begin"], TS_FORMAT)
    power_end = datetime.strptime(detail["power_end"], TS_FORMAT)

    samples = []
    with open(os.path.join(run_dir, "spl.txt"), encoding="utf-8") as fh:
        for line in fh:
            if not line.startswith("Time"):
                continue
            fields = line.split(",")
            ts = datetime.strptime(fields[1], TS_FORMAT)
            watts = float(fields[3])
            if power_begin < ts < power_end and watts > 0:
                samples.append(watts)
    if not samples:
        raise SystemExit(f"{run_dir}: no power samples inside the window")

    avg = sum(samples) / len(samples)
    duration_s = (power_end - power_begin).total_seconds()
    out = {
        "scenario": scenario,
        "power_begin": detail["power_begin"],
        "power_end": detail["power_end"],
        "window_s": duration_s,
        "n_samples": len(samples),
        "avg_watts": avg,
        "result_query_count": detail["result_query_count"],
    }
    if scenario in ("SingleStream", "MultiStream"):
        out["metric"] = avg * duration_s * 1000 / detail["result_query_count"]
        out["unit"] = "millijoules"
    else:
        out["metric"] = avg
        out["unit"] = "Watts"
    return out


def main(argv):
    dirs = argv[1:] or [os.path.join(HERE, name) for name in ("single-stream", "offline")]
    ok = True
    for run_dir in dirs:
        r = compute(run_dir)
        name = os.path.basename(os.path.normpath(run_dir))
        print(f"[{name}] scenario={r['scenario']}")
        print(
            f"  power_begin={r['power_begin']}  power_end={r['power_end']}  window={r['window_s']:.3f} s"
        )
        print(
            f"  samples in window={r['n_samples']}  avg={r['avg_watts']!r} W  result_query_count={r['result_query_count']}"
        )
        print(f"  computed metric = {r['metric']!r} {r['unit']}")
        if name in PUBLISHED:
            pub, unit = PUBLISHED[name]
            diff = abs(r["metric"] - float(pub))
            match = unit == r["unit"] and diff <= 1e-9 * max(1.0, abs(float(pub)))
            ok &= match
            print(
                f"  published metric = {pub} {unit}  |diff|={diff:.3e}  -> {'MATCH' if match else 'MISMATCH'}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
