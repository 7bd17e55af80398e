"""Multi-GPU scaling: Offline throughput on 2 GPUs over 1 GPU, through LoadGen (target >= 1.9).

Both configurations in one run: the torch ResNet-50 (fp16, CUDA graphs, channels_last) is
loaded on gpu0, then on gpu0+gpu1 (one worker thread per GPU, least-loaded dispatch through
the shared work pool); each gets a tight loop (its own capacity, which also calibrates
LoadGen) and an Offline LoadGen run of --duration s. Per-GPU sample counts show the split.

Usage: python bench/multi_gpu_scaling.py --out DIR [--batch 256] [--duration 20]
About 2.5 min on two H100/H200. With fewer than 2 GPUs it writes {"skipped": ...} and exits 0.
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
from infergy.runners.engine import Engine, tight_loop
from infergy.runners.lg_settings import Calibration


def one(out: Path, gpus: tuple[int, ...], args: argparse.Namespace) -> dict[str, Any]:
    cfg = WorkloadConfig(backend=args.backend, precision=args.precision, batch_size=args.batch,
                         gpus=gpus, scenario=Scenario.OFFLINE, duration_s=args.duration,
                         cache_dir=out / "cache", workers_per_device=args.workers)  # fmt: skip
    eng = Engine(cfg)
    eng.open()
    name = "gpus" + "".join(map(str, gpus))
    try:
        kw = {"batch": args.batch, "workers_per_device": args.workers}
        tight_loop(eng.backends, duration_s=2.0, **kw)
        st = tight_loop(eng.backends, duration_s=min(10.0, args.duration), **kw)
        eng.calibration = Calibration(st.steady_samples_per_s, st.median_ns, st.median_ns,
                                      st.median_ns)  # fmt: skip
        r = eng.run(out / f"loadgen_{name}")
    finally:
        eng.close()
    d = load_loadgen_detail(out / f"loadgen_{name}")
    per = np.bincount(r.records[:, 3], weights=r.records[:, 2], minlength=len(gpus))
    return {
        "gpus": list(gpus), "tight_samples_per_s": st.samples_per_s,
        "loadgen_samples_per_s": float(d.results.get("result_samples_per_second", 0.0)),  # type: ignore[arg-type]
        "validity": "VALID" if d.result_valid else "INVALID", "failure": r.failure,
        "samples_per_gpu": [int(x) for x in per],
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--backend", default="torch", choices=["torch", "tensorrt", "onnxruntime"])
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "multi_gpu_scaling.json"
    try:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        n = 0
    if n < 2:
        path.write_text(json.dumps({"skipped": f"needs 2 GPUs, found {n}"}))
        print(f"skipped: needs 2 GPUs, found {n}")
        return
    t0 = time.time()
    single, double = one(args.out, (0,), args), one(args.out, (0, 1), args)
    lg = double["loadgen_samples_per_s"] / single["loadgen_samples_per_s"]
    tight = double["tight_samples_per_s"] / single["tight_samples_per_s"]
    result = {"bench": "multi_gpu_scaling", "device": torch.cuda.get_device_name(0),
              "config": {k: v for k, v in vars(args).items() if k != "out"},
              "one_gpu": single, "two_gpus": double, "scaling_loadgen": lg,
              "scaling_tight_loop": tight, "target": 1.9, "wall_s": time.time() - t0}  # fmt: skip
    path.write_text(json.dumps(result, indent=1))
    print(
        f"1 GPU {single['loadgen_samples_per_s']:,.0f}/s ({single['validity']}), 2 GPUs "
        f"{double['loadgen_samples_per_s']:,.0f}/s ({double['validity']}, split "
        f"{double['samples_per_gpu']}) -> scaling {lg:.3f} (tight loop {tight:.3f}; target 1.9)"
    )
    print(f"wall {result['wall_s']:.0f} s -> {path}")


if __name__ == "__main__":
    main()
