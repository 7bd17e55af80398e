"""``infergy measure`` of a known GPU load against the energy counter read independently.

The parent runs, --repeats times::

    python -m infergy measure --meter nvml --no-store --json R.json -- \
        python bench/measure_gpu_load.py --child --seconds S --report C.json

The child reads GPU 0's total-energy counter with its own NVML handle (never infergy's),
waiting for the counter to tick so each reading is fresh, marks ``begin load`` on
``$INFERGY_MARK`` right after the first reading, runs ResNet-50 fp16 batch 256 (or the
documented matmul fallback, bench/_gpu_load.py) for S seconds, waits for the counter to tick
again, marks ``end load`` and writes the delta. The figure is infergy's ``load`` phase energy
of ``gpu0`` against that delta (target: within 1 %), and of ``gpu0.samples`` (the 20-ms
power samples) for comparison. Read-only: no NVML setter is called.

Usage on a GPU host (repository root; torch with CUDA):
  PYTHONPATH=. python bench/measure_gpu_load.py --out DIR [--seconds 30] [--repeats 3]
Writes DIR/measure_gpu_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled


def _fresh_counter_mj(nvml: Any, handle: Any, timeout_s: float = 2.0) -> tuple[int, int]:
    """(counter mJ, monotonic ns) right after the counter's next update."""
    first = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        if value != first:
            return int(value), time.monotonic_ns()
        time.sleep(0.002)
    return int(first), time.monotonic_ns()


def _mark(line: str) -> None:
    with open(os.environ["INFERGY_MARK"], "w", encoding="utf-8") as fifo:  # noqa: PTH123
        fifo.write(line + "\n")


def child(seconds: float, report: Path) -> None:
    import pynvml
    import torch
    from _gpu_load import Workload  # type: ignore[import-not-found]

    from infergy.core.clock import SessionClock

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    workload = Workload(torch, 0)
    workload.run("offline", 3.0, SessionClock())  # warm: cudnn autotune, clocks up
    c0, t0 = _fresh_counter_mj(pynvml, handle)
    _mark("begin load")
    result = workload.run("offline", seconds, SessionClock())
    c1, t1 = _fresh_counter_mj(pynvml, handle)
    _mark("end load")
    report.write_text(json.dumps({
        "counter_delta_j": (c1 - c0) / 1000.0, "span_s": (t1 - t0) / 1e9,
        "load": workload.kind, "samples_per_s": result.samples_per_s,
        "gpu": pynvml.nvmlDeviceGetName(handle),
    }))  # fmt: skip
    pynvml.nvmlShutdown()


def parent(out: Path, seconds: float, repeats: int) -> None:
    runs: list[dict[str, Any]] = []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), str(ROOT / "bench"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    out.mkdir(parents=True, exist_ok=True)
    for i in range(repeats):
        result_json, report = out / f"measure_{i}.json", out / f"child_{i}.json"
        cmd = [
            sys.executable, "-m", "infergy", "measure", "--meter", "nvml", "--no-store",
            "--json", str(result_json), "--", sys.executable, str(Path(__file__).resolve()),
            "--child", "--seconds", str(seconds), "--report", str(report),
        ]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr)
            raise SystemExit(f"run {i}: infergy measure exited {done.returncode}")
        result = json.loads(result_json.read_text())
        ref = json.loads(report.read_text())
        (phase,) = [p for p in result["phases"] if p["name"] == "load"]
        gpu0 = phase["power"]["gpu0"]
        samples = phase["power"].get("gpu0.samples") or {}
        run = {
            "reference_j": ref["counter_delta_j"], "reference_span_s": ref["span_s"],
            "phase_s": phase["duration_s"], "infergy_gpu0_j": gpu0["energy_joules"],
            "infergy_gpu0_uncertainty_j": gpu0["uncertainty_joules"],
            "infergy_gpu0_samples_j": samples.get("energy_joules"),
            "relative_error": gpu0["energy_joules"] / ref["counter_delta_j"] - 1,
            "samples_relative_error": (
                samples["energy_joules"] / ref["counter_delta_j"] - 1
                if samples.get("energy_joules") else None
            ),
            "mean_w": gpu0["average_watts"], "load": ref["load"], "gpu": ref["gpu"],
            "samples_per_s": ref["samples_per_s"], "status": result["status"],
            "problems": result["problems"],
        }  # fmt: skip
        runs.append(run)
        print(f"run {i + 1}: infergy {run['infergy_gpu0_j']:.1f} J vs counter "
              f"{run['reference_j']:.1f} J ({100 * run['relative_error']:+.3f} %), "
              f"{run['mean_w']:.0f} W over {run['phase_s']:.2f} s")  # fmt: skip
    errors = [abs(r["relative_error"]) for r in runs]
    summary = {
        "date": time.strftime("%Y-%m-%d"), "seconds": seconds, "repeats": repeats,
        "median_abs_relative_error": statistics.median(errors),
        "max_abs_relative_error": max(errors), "within_1_percent": max(errors) < 0.01,
        "runs": runs,
    }  # fmt: skip
    (out / "measure_gpu_load.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"|infergy - counter| / counter: median {100 * summary['median_abs_relative_error']:.3f} %"
          f", max {100 * summary['max_abs_relative_error']:.3f} %")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", action="store_true")
    p.add_argument("--report", type=Path)
    a = p.parse_args()
    if a.child:
        child(a.seconds, a.report)
    elif a.out is None:
        p.error("--out is required")
    else:
        parent(a.out, a.seconds, a.repeats)


if __name__ == "__main__":
    main()
