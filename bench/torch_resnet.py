"""torch ResNet-50 on one GPU: eager NCHW vs channels_last vs CUDA graphs (fp16, batch sweep).

For every variant and batch (64/128/256 by default) the built-in ResNet-50 (torchvision,
random weights) is loaded by infergy's torch backend and run in its tight loop for
--seconds; throughput (img/s) and GPU energy from the NVML energy counter (read-only) give
img/J. Then SingleStream batch 1: eager vs CUDA graph latency p50/p90. ``--compile`` adds
``torch.compile(mode="max-autotune")`` at the largest batch (minutes of autotuning on the
first run; cached under --out/cache/torchinductor for the next). The compiled variant runs
in a child process that prints its milestones while the parent prints a heartbeat every
--progress-s; after --compile-timeout-s the child is killed and the row says
``timed_out`` (what inductor cached so far stays for the next run). ``--compile-only`` skips
the sweep and SingleStream: eager NCHW at the largest batch, then the compiled model.

Reference points from the issue (H100, fp16, batch 256): eager NCHW 9,500 img/s; eager
channels_last 13,800; CUDA graph 14,000; torch.compile max-autotune 24,500. SingleStream
batch 1: eager p90 5.7 ms, CUDA graph p90 0.94 ms.

Usage: python bench/torch_resnet.py --out DIR [--batches 64,128,256] [--seconds 6]
         [--compile [--compile-only] [--compile-timeout-s 420] [--progress-s 30]]
About 3 min on an H100 without --compile. Writes DIR/torch_resnet.json. Within one 10-minute
call: ``--out bench/out/torch_compile --batches 256 --compile --compile-only
--compile-timeout-s 420`` (bench/out is git-ignored, so the inductor cache survives to a
second call on the same machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from infergy.runners import WorkloadConfig
from infergy.runners.backends.torch_backend import TorchBackend
from infergy.runners.engine import tight_loop
from infergy.runners.models import resolve_model

VARIANTS = {
    "eager_nchw": {"channels_last": False, "cuda_graphs": False},
    "eager_channels_last": {"channels_last": True, "cuda_graphs": False},
    "cuda_graph_channels_last": {"channels_last": True, "cuda_graphs": True},
}


class Energy:
    """NVML's total-energy counter of GPU 0 (mJ), or nothing when NVML is missing."""

    def __init__(self) -> None:
        self.h: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.h = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.read()
        except Exception as err:
            print(f"no NVML energy counter ({err}): img/J omitted")
            self.h = None

    def read(self) -> float | None:
        return (
            None if self.h is None else self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.h) / 1e3
        )


def measure(
    out: Path,
    variant: str,
    opts: dict[str, Any],
    batch: int,
    seconds: float,
    energy: Energy,
    seed: int = 0,
) -> dict[str, Any]:
    cfg = WorkloadConfig(
        backend="torch",
        precision="fp16",
        batch_size=batch,
        gpus=(0,),
        cache_dir=out / "cache",
        seed=seed,
        **opts,
    )
    b = TorchBackend(cfg, resolve_model("torch", "resnet50"), 0)
    t0 = time.time()
    b.load()
    load_s = time.time() - t0
    try:
        tight_loop([b], batch=batch, workers_per_device=1, duration_s=2.0)  # clocks up, caches warm
        e0 = energy.read()
        st = tight_loop([b], batch=batch, workers_per_device=1, duration_s=seconds)
        e1 = energy.read()
    finally:
        b.close()
    joules = None if e0 is None or e1 is None else e1 - e0
    return {
        "variant": variant, "batch": batch, "img_per_s": st.samples_per_s, "load_s": load_s,
        "batch_ms_p50": st.median_ns / 1e6, "joules": joules,
        "avg_w": None if joules is None else joules / st.elapsed_s,
        "img_per_j": None if not joules else st.samples / joules,
    }  # fmt: skip


def compile_in_child(
    out: Path, batch: int, seconds: float, timeout_s: float, progress_s: float
) -> dict[str, Any]:
    """The compiled variant in a child process, killed after ``timeout_s`` (a heartbeat meanwhile).

    torch.compile's autotuning cannot be interrupted in-process; killing a process can (its
    CUDA context goes with it). The child leads its own process group so inductor's compile
    workers are killed with it.
    """
    result = out / "compile_row.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--out", str(out), "--seconds", str(seconds),
           "--compile-child", str(batch)]  # fmt: skip
    t0 = time.monotonic()
    print(f"  compile_max_autotune b{batch}: child started (timeout {timeout_s:.0f} s)", flush=True)
    proc = subprocess.Popen(cmd, start_new_session=True)  # its output goes straight to ours
    try:
        while True:
            try:
                proc.wait(timeout=min(progress_s, max(0.1, timeout_s - (time.monotonic() - t0))))
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - t0
                if elapsed >= timeout_s:
                    print(f"  compile_max_autotune: killing it after {elapsed:.0f} s (timeout)",
                          flush=True)  # fmt: skip
                    return {"variant": "compile_max_autotune", "batch": batch, "timed_out": True,
                            "elapsed_s": elapsed, "img_per_s": 0.0}  # fmt: skip
                print(f"  compile_max_autotune: {elapsed:.0f} s elapsed ...", flush=True)
    finally:
        if proc.returncode is None:  # not reaped: timed out or interrupted
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the child's group: it and its workers
            proc.wait()
    if proc.returncode != 0 or not result.is_file():
        print(f"  compile_max_autotune: child failed (rc {proc.returncode})", flush=True)
        return {"variant": "compile_max_autotune", "batch": batch, "failed": proc.returncode,
                "elapsed_s": time.monotonic() - t0, "img_per_s": 0.0}  # fmt: skip
    row: dict[str, Any] = json.loads(result.read_text())
    row["elapsed_s"] = time.monotonic() - t0
    return row


def compile_child(out: Path, batch: int, seconds: float, result: Path) -> None:
    """Child side: load (compile) and measure, printing milestones; the row to ``result``."""
    print(f"  [child] loading resnet50 b{batch} with torch.compile(mode='max-autotune'); "
          "the first forward compiles and autotunes", flush=True)  # fmt: skip
    opts = {"channels_last": True, "cuda_graphs": False, "compile": True}
    row = measure(out, "compile_max_autotune", opts, batch, seconds, Energy())
    print(f"  [child] compiled and loaded in {row['load_s']:.0f} s; measured "
          f"{row['img_per_s']:,.0f} img/s", flush=True)  # fmt: skip
    result.write_text(json.dumps(row))


def single_stream(out: Path, graphs: bool, seconds: float) -> dict[str, Any]:
    cfg = WorkloadConfig(backend="torch", precision="fp16", batch_size=1, gpus=(0,),
                         cache_dir=out / "cache", cuda_graphs=graphs)  # fmt: skip
    b = TorchBackend(cfg, resolve_model("torch", "resnet50"), 0)
    b.load()
    try:
        tight_loop([b], batch=1, workers_per_device=1, duration_s=1.0)
        st = tight_loop([b], batch=1, workers_per_device=1, duration_s=seconds)
    finally:
        b.close()
    lat = np.asarray(st.latencies_ns, dtype=np.float64) / 1e6
    return {"cuda_graphs": graphs, "p50_ms": float(np.percentile(lat, 50)),
            "p90_ms": float(np.percentile(lat, 90)), "calls": st.calls}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--batches", default="64,128,256")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--compile", action="store_true", help="add torch.compile max-autotune")
    ap.add_argument(
        "--compile-only",
        action="store_true",
        help="with --compile: only eager NCHW and the compiled model, largest batch",
    )
    ap.add_argument(
        "--compile-timeout-s",
        type=float,
        default=420.0,
        help="kill the compile variant after this long (default 420)",
    )
    ap.add_argument("--progress-s", type=float, default=30.0, help="heartbeat period")
    ap.add_argument("--compile-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.compile_child:
        compile_child(args.out, args.compile_child, args.seconds, args.out / "compile_row.json")
        return
    try:
        import torch
    except ImportError:
        print("torch is not installed: nothing to measure")
        return
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    batches = [int(b) for b in args.batches.split(",")]
    energy = Energy()
    rows = []
    t0 = time.time()
    sweep = [(max(batches), "eager_nchw")] if args.compile and args.compile_only else [
        (b, name) for b in batches for name in VARIANTS
    ]  # fmt: skip
    for batch, name in sweep:
        print(f"  {name} b{batch} ...", flush=True)
        rows.append(measure(args.out, name, VARIANTS[name], batch, args.seconds, energy))
        r = rows[-1]
        print(
            f"  {name:26s} b{batch:<4d} {r['img_per_s']:9,.0f} img/s"
            + (f"  {r['img_per_j']:6.1f} img/J  {r['avg_w']:5.0f} W" if r["img_per_j"] else "")
        )
    if args.compile:
        rows.append(compile_in_child(args.out, max(batches), args.seconds,
                                     args.compile_timeout_s, args.progress_s))  # fmt: skip
        r = rows[-1]
        if r["img_per_s"]:
            print(f"  compile_max_autotune b{max(batches)}: {r['img_per_s']:,.0f} img/s "
                  f"(load+compile {r['load_s']:.0f} s, child {r['elapsed_s']:.0f} s)")  # fmt: skip
    skip_ss = args.compile and args.compile_only
    ss = [] if skip_ss else [single_stream(args.out, g, args.seconds / 2) for g in (False, True)]
    best = max(rows, key=lambda r: r["img_per_s"])
    base = next(r for r in rows if r["variant"] == "eager_nchw" and r["batch"] == best["batch"])
    result = {"bench": "torch_resnet", "device": torch.cuda.get_device_name(0),
              "torch": torch.__version__, "rows": rows, "single_stream": ss,
              "best": best, "best_over_eager_nchw": best["img_per_s"] / base["img_per_s"],
              "wall_s": time.time() - t0}  # fmt: skip
    (args.out / "torch_resnet.json").write_text(json.dumps(result, indent=1))
    print(
        f"best: {best['variant']} b{best['batch']} {best['img_per_s']:,.0f} img/s = "
        f"{result['best_over_eager_nchw']:.2f}x eager NCHW at the same batch"
    )
    print("single-stream b1: " + ", ".join(
        f"{'graph' if s['cuda_graphs'] else 'eager'} p50 {s['p50_ms']:.2f} / p90 {s['p90_ms']:.2f} ms"
        for s in ss))  # fmt: skip
    print(f"wall {result['wall_s']:.0f} s -> {args.out / 'torch_resnet.json'}")


if __name__ == "__main__":
    main()
