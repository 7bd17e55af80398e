"""Harness efficiency: what LoadGen and infergy's SUT cost over the backend's own tight loop.

Both sides in one run, same process, same loaded model:
  Offline      samples/s through LoadGen (the detail log's result_samples_per_second) over the
               backend's tight loop at the same batch (mean of the loops just before and just
               after each LoadGen run, so drift cancels); median of --repeats runs;
               target >= 0.97.
  SingleStream p90 latency through LoadGen minus the raw call's p90 (batch 1, tight loop);
               target <= 50 us (median of --repeats pairs). Also the SUT-side p90 (issue ->
               completion inside our callback), which tells LoadGen's share from ours.

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


def offline(cfg: WorkloadConfig, out: Path, repeats: int) -> dict[str, Any]:
    """Tight loop, LoadGen, tight loop, LoadGen, ... : each LoadGen run against its neighbours."""
    eng = Engine(cfg)
    eng.open()
    kw = {"batch": cfg.batch_size, "workers_per_device": cfg.workers_per_device}
    tights: list[LoopStats] = []
    runs: list[dict[str, Any]] = []
    try:
        tight_loop(eng.backends, duration_s=2.0, **kw)  # settle clocks and caches
        tights.append(tight_loop(eng.backends, duration_s=cfg.duration_s, **kw))
        for i in range(repeats):
            t = tights[-1]
            eng.calibration = Calibration(t.steady_samples_per_s, t.median_ns, t.median_ns,
                                          t.median_ns)  # fmt: skip
            lg_dir = out / f"loadgen_offline_{i}"
            r = eng.run(lg_dir)
            tights.append(tight_loop(eng.backends, duration_s=cfg.duration_s, **kw))
            d = load_loadgen_detail(lg_dir)
            lg_sps = float(d.results.get("result_samples_per_second", 0.0))  # type: ignore[arg-type]
            rec = r.records
            own_sps = float(rec[:, 2].sum() / ((rec[:, 1].max() - rec[:, 0].min()) / 1e9))
            tight = (tights[-2].samples_per_s + tights[-1].samples_per_s) / 2
            runs.append({
                "loadgen_samples_per_s": lg_sps, "recorded_samples_per_s": own_sps,
                "tight_loop_samples_per_s": tight, "ratio": lg_sps / tight,
                "validity": "VALID" if d.result_valid else "INVALID", "failure": r.failure,
            })  # fmt: skip
    finally:
        eng.close()
    return {
        "batch": cfg.batch_size, "repeats": runs,
        "ratio": float(np.median([r["ratio"] for r in runs])),
        "ratio_min": min(r["ratio"] for r in runs), "target_ratio": 0.97,
        "loadgen_samples_per_s": float(np.median([r["loadgen_samples_per_s"] for r in runs])),
        "tight_loop_samples_per_s": [t.samples_per_s for t in tights],
        "validity": "VALID" if all(r["validity"] == "VALID" for r in runs) else "INVALID",
        "tight_batch_ms_p50": tights[0].median_ns / 1e6,
    }  # fmt: skip


def single_stream(cfg: WorkloadConfig, out: Path, repeats: int) -> dict[str, Any]:
    """Raw batch-1 calls around each LoadGen SingleStream run (raw, LG, raw, LG, ..., raw).

    The raw p90 moves by +-15 us over minutes on a GPU VM (clocks, host noise), so each LoadGen
    run is compared with the mean p90 of the raw loops just before and just after it.
    """
    eng = Engine(cfg)
    eng.open()
    runs: list[dict[str, Any]] = []
    kw = {"batch": 1, "workers_per_device": 1, "duration_s": min(10.0, cfg.duration_s)}
    try:
        tight_loop(eng.backends[:1], **{**kw, "duration_s": 2.0})
        raws: list[LoopStats] = [tight_loop(eng.backends[:1], **kw)]
        for i in range(repeats):
            raw = raws[-1]
            eng.calibration = Calibration(raw.samples_per_s, raw.median_ns, raw.median_ns,
                                          8 * raw.median_ns)  # fmt: skip
            lg_dir = out / f"loadgen_single_stream_{i}"
            r = eng.run(lg_dir)
            raws.append(tight_loop(eng.backends[:1], **kw))
            d = load_loadgen_detail(lg_dir)
            lg_p90 = float(d.latency_percentiles_ns.get("p90", 0))
            sut_lat = (r.records[:, 1] - r.records[:, 0]).tolist()
            pair = [_p(x.latencies_ns, 90) for x in raws[-2:]]
            raw_p90 = sum(pair) / 2
            runs.append({
                "raw_p50_us": _p(raws[-2].latencies_ns, 50) / 1e3, "raw_p90_us": raw_p90 / 1e3,
                "raw_p90_before_after_us": [x / 1e3 for x in pair],
                "loadgen_p90_us": lg_p90 / 1e3, "sut_p90_us": _p(sut_lat, 90) / 1e3,
                "overhead_p90_us": (lg_p90 - raw_p90) / 1e3, "queries": len(r.records),
                "validity": "VALID" if d.result_valid else "INVALID", "failure": r.failure,
            })  # fmt: skip
    finally:
        eng.close()
    med = {k: float(np.median([r[k] for r in runs]))
           for k in ("raw_p50_us", "raw_p90_us", "loadgen_p90_us", "sut_p90_us",
                     "overhead_p90_us")}  # fmt: skip
    return {
        **med, "overhead_p90_us_max": max(r["overhead_p90_us"] for r in runs),
        "target_overhead_us": 50.0, "repeats": runs,
        "queries": sum(r["queries"] for r in runs),
        "validity": "VALID" if all(r["validity"] == "VALID" for r in runs) else "INVALID",
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
    ap.add_argument("--repeats", type=int, default=3, help="LoadGen runs per scenario (median)")
    ap.add_argument("--scenarios", default="offline,single-stream", help="which comparisons")
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
    wanted = set(args.scenarios.split(","))
    t0 = time.time()
    result: dict[str, Any] = {"bench": "harness_efficiency", "config": {
        **base, "gpus": list(base["gpus"]), "cache_dir": str(base["cache_dir"])}}  # fmt: skip
    print(f"harness efficiency ({backend} {precision}, {'gpu0' if on_gpu else 'cpu'}):")
    if "offline" in wanted:
        off = offline(WorkloadConfig(**base, batch_size=batch, scenario=Scenario.OFFLINE),
                      args.out, args.repeats)  # fmt: skip
        result["offline"] = off
        ratios = ", ".join(f"{r['ratio']:.4f}" for r in off["repeats"])
        print(
            f"  Offline b{batch}: LoadGen {off['loadgen_samples_per_s']:,.0f}/s, ratio over the "
            f"tight loop: median {off['ratio']:.4f} of {ratios} (target >= 0.97) "
            f"{off['validity']}"
        )
    if "single-stream" in wanted:
        ss = single_stream(WorkloadConfig(**base, batch_size=1, scenario=Scenario.SINGLE_STREAM),
                           args.out, args.repeats)  # fmt: skip
        result["single_stream"] = ss
        print(
            f"  SingleStream p90: raw {ss['raw_p90_us']:.1f} us, LoadGen "
            f"{ss['loadgen_p90_us']:.1f} us (SUT-side {ss['sut_p90_us']:.1f} us) -> overhead "
            f"{ss['overhead_p90_us']:.1f} us (median of {len(ss['repeats'])}; max "
            f"{ss['overhead_p90_us_max']:.1f}; target <= 50) {ss['validity']}"
        )
    result["wall_s"] = time.time() - t0
    (args.out / "harness_efficiency.json").write_text(json.dumps(result, indent=1))
    print(f"  wall {result['wall_s']:.0f} s -> {args.out / 'harness_efficiency.json'}")


if __name__ == "__main__":
    main()
