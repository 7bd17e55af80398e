"""Harness efficiency: what LoadGen and infergy's SUT cost over the backend's own tight loop.

Both sides in one run, same process, same loaded model:
  Offline      samples/s through LoadGen (the detail log's result_samples_per_second) over the
               backend's tight loop at the same batch (mean of one loop before and one after
               the LoadGen run, so drift shows as the spread); target >= 0.97.
  SingleStream p90 latency through LoadGen minus the raw call's p90 (batch 1, tight loop);
               target <= 50 us. Also the SUT-side p90 (issue -> completion inside our callback),
               which tells LoadGen's share from ours.

Usage (repository root; PYTHONPATH=. when infergy is not installed):
  python bench/harness_efficiency.py --out DIR [--backend torch] [--batch 256] [--duration 15]
Defaults: torch ResNet-50 fp16 on gpu0 when CUDA is available (about 2.5 min on an H100),
else the onnxruntime tiny model on the CPU. Writes DIR/harness_efficiency.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from infergy.core.trace import Scenario
from infergy.formats.loadgen import load_loadgen_detail
from infergy.runners import WorkloadConfig
from infergy.runners.engine import Engine, LoopStats, tight_loop
from infergy.runners.lg_settings import Calibration


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _p(lat_ns: list[int], q: float) -> float:
    return float(np.percentile(np.asarray(lat_ns, dtype=np.float64), q))


def offline(cfg: WorkloadConfig, out: Path) -> dict[str, Any]:
    eng = Engine(cfg)
    eng.open()
    try:
        kw = {"batch": cfg.batch_size, "workers_per_device": cfg.workers_per_device}
        tight_loop(eng.backends, duration_s=2.0, **kw)  # settle clocks and caches
        before = tight_loop(eng.backends, duration_s=cfg.duration_s, **kw)
        eng.calibration = Calibration(before.steady_samples_per_s, before.median_ns, before.median_ns,
                                      before.median_ns)  # fmt: skip
        r = eng.run(out / "loadgen_offline")
        after = tight_loop(eng.backends, duration_s=cfg.duration_s, **kw)
    finally:
        eng.close()
    d = load_loadgen_detail(out / "loadgen_offline")
    lg_sps = float(d.results.get("result_samples_per_second", 0.0))  # type: ignore[arg-type]
    tight = (before.samples_per_s + after.samples_per_s) / 2
    return {
        "batch": cfg.batch_size, "loadgen_samples_per_s": lg_sps,
        "tight_loop_samples_per_s": [before.samples_per_s, after.samples_per_s],
        "ratio": lg_sps / tight if tight else None, "target_ratio": 0.97,
        "validity": "VALID" if d.result_valid else "INVALID", "failure": r.failure,
        "tight_batch_ms_p50": before.median_ns / 1e6,
    }  # fmt: skip


def single_stream(cfg: WorkloadConfig, out: Path) -> dict[str, Any]:
    eng = Engine(cfg)
    eng.open()
    try:
        tight_loop(eng.backends[:1], batch=1, workers_per_device=1, duration_s=2.0)
        raw: LoopStats = tight_loop(eng.backends[:1], batch=1, workers_per_device=1,
                                    duration_s=min(10.0, cfg.duration_s))  # fmt: skip
        eng.calibration = Calibration(raw.samples_per_s, raw.median_ns, raw.median_ns,
                                      8 * raw.median_ns)  # fmt: skip
        r = eng.run(out / "loadgen_single_stream")
    finally:
        eng.close()
    d = load_loadgen_detail(out / "loadgen_single_stream")
    lg_p90 = float(d.latency_percentiles_ns.get("p90", 0))
    sut_lat = (r.records[:, 1] - r.records[:, 0]).tolist()
    raw_p90 = _p(raw.latencies_ns, 90)
    return {
        "raw_p50_us": _p(raw.latencies_ns, 50) / 1e3, "raw_p90_us": raw_p90 / 1e3,
        "loadgen_p90_us": lg_p90 / 1e3, "sut_p90_us": _p(sut_lat, 90) / 1e3,
        "overhead_p90_us": (lg_p90 - raw_p90) / 1e3, "target_overhead_us": 50.0,
        "queries": len(r.records), "validity": "VALID" if d.result_valid else "INVALID",
        "failure": r.failure,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--backend", choices=["torch", "onnxruntime", "tensorrt"])
    ap.add_argument("--model", default="auto")
    ap.add_argument("--precision")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per measured phase")
    ap.add_argument("--workers", type=int, default=1, help="executors (streams) per device")
    args = ap.parse_args()
    gpu = _cuda()
    backend = args.backend or ("torch" if gpu else "onnxruntime")
    on_gpu = backend != "onnxruntime" or (gpu and args.backend == "onnxruntime")
    batch = args.batch or (256 if backend != "onnxruntime" else 32)
    precision = args.precision or ("fp16" if backend != "onnxruntime" else "fp32")
    args.out.mkdir(parents=True, exist_ok=True)
    base = {"backend": backend, "model": args.model, "precision": precision,
            "gpus": (0,) if on_gpu else (), "duration_s": args.duration,
            "workers_per_device": args.workers, "cache_dir": args.out / "cache"}  # fmt: skip
    t0 = time.time()
    off = offline(WorkloadConfig(**base, batch_size=batch, scenario=Scenario.OFFLINE), args.out)
    ss = single_stream(WorkloadConfig(**base, batch_size=1, scenario=Scenario.SINGLE_STREAM),
                       args.out)  # fmt: skip
    result = {"bench": "harness_efficiency", "config": {**base, "gpus": list(base["gpus"]),
              "cache_dir": str(base["cache_dir"])}, "offline": off, "single_stream": ss,
              "wall_s": time.time() - t0}  # fmt: skip
    (args.out / "harness_efficiency.json").write_text(json.dumps(result, indent=1))
    print(f"harness efficiency ({backend} {precision}, {'gpu0' if on_gpu else 'cpu'}):")
    print(
        f"  Offline b{batch}: LoadGen {off['loadgen_samples_per_s']:,.0f}/s vs tight loop "
        f"{off['tight_loop_samples_per_s'][0]:,.0f}/{off['tight_loop_samples_per_s'][1]:,.0f}/s"
        f" -> ratio {off['ratio']:.4f} (target >= 0.97) {off['validity']}"
    )
    print(
        f"  SingleStream p90: raw {ss['raw_p90_us']:.1f} us, LoadGen {ss['loadgen_p90_us']:.1f}"
        f" us (SUT-side {ss['sut_p90_us']:.1f} us) -> overhead {ss['overhead_p90_us']:.1f} us "
        f"(target <= 50) {ss['validity']}"
    )
    print(f"  wall {result['wall_s']:.0f} s -> {args.out / 'harness_efficiency.json'}")


if __name__ == "__main__":
    main()
