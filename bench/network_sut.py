"""Network SUT vs in process: Offline samples/s of the same model, served over KServe v2 or run here.

Both sides in one run, alternated (A B A B ...), same model (the built-in ``tiny`` ONNX model
on ONNX Runtime), same batch, same ONNX Runtime threads and concurrent inferences:

  in process   infergy's Engine with the onnxruntime backend: ``--workers`` executors of
               ``--threads`` intra-op threads each;
  network      the KServe v2 test server (tests/integration/inference_servers.py, aiohttp +
               ONNX Runtime, ``--workers`` inferences at once, ``--threads`` each) in its own
               process on this host, driven by infergy's Engine with the kserve backend
               (``--concurrency`` requests in flight, binary tensors unless --json).

Throughput is LoadGen's own ``result_samples_per_second`` of each Offline run; the figure is
the median over ``--repeats`` pairs of network / in process.

Usage (repository root):
  PYTHONPATH=. python bench/network_sut.py --out DIR [--batch 32] [--duration 5] [--repeats 5]
Writes DIR/network_sut.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from infergy.core.trace import Scenario
from infergy.formats.loadgen import load_loadgen_detail
from infergy.runners import WorkloadConfig
from infergy.runners.engine import Engine
from tests.integration.inference_servers import running, stats


def _offline(cfg: WorkloadConfig, warmup_s: float, tmp: Path, tag: str) -> dict[str, Any]:
    eng = Engine(cfg)
    try:
        eng.open()
        eng.warmup(warmup_s)
        lg_dir = tmp / f"{tag}-{time.monotonic_ns()}"
        r = eng.run(lg_dir)
    finally:
        eng.close()
    detail = load_loadgen_detail(lg_dir)
    return {
        "samples_per_second": detail.results.get("result_samples_per_second"),
        "valid": detail.result_valid,
        "failures": r.failures,
        "network": r.network,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--json", action="store_true", help="JSON tensors instead of binary")
    a = p.parse_args()
    local = WorkloadConfig(
        backend="onnxruntime", model="tiny", batch_size=a.batch, scenario=Scenario.OFFLINE,
        duration_s=a.duration, workers_per_device=a.workers, intra_op_threads=a.threads,
    )  # fmt: skip
    server_args = ["--threads", str(a.threads), "--workers", str(a.workers)]
    if not a.json:
        server_args.append("--binary")
    pairs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, running("kserve", *server_args) as (_p, port):
        net = WorkloadConfig(
            backend="kserve", endpoint=f"http://127.0.0.1:{port}/v2/models/tiny",
            batch_size=a.batch, scenario=Scenario.OFFLINE, duration_s=a.duration,
            concurrency=a.concurrency,
        )  # fmt: skip
        for i in range(a.repeats):
            inproc = _offline(local, a.warmup, Path(tmp), f"local{i}")
            network = _offline(net, a.warmup, Path(tmp), f"net{i}")
            ratio = None
            if inproc["samples_per_second"] and network["samples_per_second"]:
                ratio = network["samples_per_second"] / inproc["samples_per_second"]
            pairs.append({"in_process": inproc, "network": network, "ratio": ratio})
            print(f"pair {i + 1}: in process {inproc['samples_per_second']:,.0f} samples/s, "
                  f"network {network['samples_per_second']:,.0f} samples/s, ratio {ratio:.3f}")  # fmt: skip
        served = stats(port)
    ratios = [p["ratio"] for p in pairs if p["ratio"] is not None]
    out = {
        "date": time.strftime("%Y-%m-%d"), "platform": platform.platform(),
        "python": platform.python_version(), "args": {k: str(v) for k, v in vars(a).items()},
        "ratio_median": statistics.median(ratios) if ratios else None,
        "in_process_median": statistics.median(p["in_process"]["samples_per_second"] for p in pairs),
        "network_median": statistics.median(p["network"]["samples_per_second"] for p in pairs),
        "pairs": pairs, "server_stats": served,
    }  # fmt: skip
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "network_sut.json").write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"network / in process: {out['ratio_median']:.3f} (median of {len(ratios)} pairs); "
        f"{out['network_median']:,.0f} vs {out['in_process_median']:,.0f} samples/s"
    )


if __name__ == "__main__":
    main()
