"""Read-only batch x precision sweep of ResNet-50 (torch) on a real GPU, with auto's choice.

Prepared for the lent H200 (issue 14's benchmark); run by the lead, never changes a setting:
it runs ``infergy maxq`` with batch-size and precision axes only (no power-limit or clock
axis, so no setter is ever called and no journal is written; the script checks both), then,
for the latency, one short Server run per point at half the point's Offline throughput.

Per (batch, precision): samples/s, W from the GPU's energy counter (``gpu0``), samples/J with
its uncertainty, p99 latency (Server at 50 % load), and the time the point cost beyond its
measured window (warm-up, LoadGen start, tail, analysis). ``auto``'s choice (the knee rule of
``--batch-size auto``: the smallest batch within 3 % of the best samples/J) is marked per
precision. Results: ``bench/results/maxq_h200_<date>/`` (the sweep record, the Server runs,
``summary.md``).

Usage (on the GPU machine, from the repository root)::

    python bench/maxq_h200_batches.py                       # ~15 min: 2 x 6 points + Server
    python bench/maxq_h200_batches.py --batches 1,8,64,256 --point-duration 10 --no-latency
    # the script itself on a SIMULATED H200 (no GPU needed; figures not a measurement):
    INFERGY_METERS__SIMULATED_GPUS=1 INFERGY_METERS__SIMULATED_PART=h200 \
        python bench/maxq_h200_batches.py --backend sim --model h200 --point-duration 2 \
        --batches 1,64,256 --out /tmp/maxq-check

Needs CUDA PyTorch with torchvision (``infergy doctor``); uses a private state dir and store.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infergy.maxq.recommend import knee_batch_size  # noqa: E402

KNEE_WITHIN = 0.03


def infergy(args: list[str], env: dict[str, str], timeout_s: float) -> dict[str, Any]:
    """``python -m infergy ARGS --json``; the JSON it prints (stderr passed through)."""
    cmd = [sys.executable, "-m", "infergy", *args, "--json"]
    done = subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    sys.stderr.write(done.stderr)
    if not done.stdout.strip():
        msg = f"{' '.join(cmd)} exited {done.returncode} without JSON"
        raise SystemExit(msg)
    body: dict[str, Any] = json.loads(done.stdout)
    return body


def _gpu_name(record: dict[str, Any]) -> str:
    gpus = record.get("gpus") or []
    return str(gpus[0]["label"]) if gpus else "the GPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="1,4,16,64,128,256")
    ap.add_argument("--precisions", default="fp32,fp16")
    ap.add_argument("--point-duration", type=float, default=15.0)
    ap.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--backend", default="torch", help="torch; sim to check the script here")
    ap.add_argument("--model", default="resnet50")
    args = ap.parse_args()
    out = args.out or ROOT / "bench" / "results" / f"maxq_h200_{time.strftime('%Y-%m-%d')}"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="infergy-maxq-bench-"))
    config = work / "infergy.toml"
    config.write_text(
        f'[store]\npath = "{work / "store.db"}"\n[output]\ndir = "{work / "out"}"\n'
        f'[maxq]\nstate_dir = "{work / "state"}"\nmax_open_workloads = 12\n'
        "warmup_s = 5.0\nidle_s = 10.0\n[session]\nplots = true\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    t0 = time.monotonic()
    record = infergy(
        ["maxq", "--config", str(config), "--backend", args.backend, "--model", args.model,
         "--batch-sizes", args.batches, "--precisions", args.precisions, "--search", "grid",
         "--meter", "nvml", "--point-duration", str(args.point_duration), "--source", "gpu0"],
        env, timeout_s=3600,
    )  # fmt: skip
    sweep_s = time.monotonic() - t0
    (out / "sweep.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    # read-only, as promised: no setting axis, no journal, nothing restored
    assert record["plan"]["changes_settings"] is False, "the sweep would change settings"
    assert record["journal"] is None and record["restore"] is None
    assert not (work / "state" / "maxq-restore.json").exists()
    rows = {}
    for p in record["points"]:
        if p["role"] == "baseline-end":
            continue
        key = (p["point"]["batch_size"], p["point"]["precision"])
        rows.setdefault(key, p)
    knees = {}
    for precision in args.precisions.split(","):
        eff = {b: r["objective"] for (b, pr), r in rows.items() if pr == precision and r["usable"]}
        if eff:
            knees[precision] = knee_batch_size(eff, within=KNEE_WITHIN)
    latency: dict[tuple[int, str], Any] = {}
    if args.latency:
        for (batch, precision), r in sorted(rows.items()):
            if not r["usable"]:
                continue
            qps = 0.5 * r["samples_per_second"]
            result = infergy(
                ["run", "--config", str(config), "--backend", args.backend, "--model", args.model,
                 "--scenario", "server", "--target-qps", f"{qps:.1f}", "--batch-size", str(batch),
                 "--precision", precision, "--duration", str(args.point_duration),
                 "--meter", "nvml"],
                env, timeout_s=900,
            )  # fmt: skip
            (out / f"server_b{batch}_{precision}.json").write_text(
                json.dumps(result, indent=1) + "\n", encoding="utf-8"
            )
            latency[(batch, precision)] = (result["performance"]["latency_ms"] or {}).get("p99")
    overheads = [p["overhead_s"] for p in record["points"] if p.get("overhead_s") is not None]
    lines = [
        f"# ResNet-50 ({args.backend}) batch x precision on {_gpu_name(record)}"
        + (" (SIMULATED)" if record.get("simulated") else ""),
        "",
        f"`python bench/maxq_h200_batches.py --batches {args.batches} --precisions "
        f"{args.precisions} --point-duration {args.point_duration:g}`, {time.strftime('%Y-%m-%d')}; "
        f"sweep {record['sweep_id']} (read-only: no setting changed), {sweep_s:.0f} s in all.",
        "W: the GPU's energy counter (gpu0) over each point's measured window. p99: a Server "
        "run at 50 % of the point's Offline throughput. `auto`: the knee rule (smallest batch "
        f"within {100 * KNEE_WITHIN:g} % of the best samples/J).",
        "",
        "| precision | batch | samples/s | W | samples/J | ± | p99 ms (Server 50 %) | extra s | auto |",
        "|---|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]  # fmt: skip
    for (batch, precision), r in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        p99 = latency.get((batch, precision))
        mark = "**auto**" if knees.get(precision) == batch else ""
        lines.append(
            f"| {precision} | {batch} | {r['samples_per_second'] or 0:,.0f} "
            f"| {r['average_power_w'] or 0:.1f} | {r['objective'] or 0:.2f} "
            f"| {r['objective_uncertainty'] or 0:.2f} "
            f"| {'—' if p99 is None else f'{p99:.2f}'} | {r['overhead_s'] or 0:.1f} | {mark} |"
        )
    lines += [
        "",
        f"Time one point costs beyond its measured window: median "
        f"{statistics.median(overheads):.1f} s, max {max(overheads):.1f} s over "
        f"{len(overheads)} points (warm-up {5.0:g} s included); preparing the "
        f"{record['search']['workloads_prepared']} workloads took "
        f"{record['search'].get('prepare_s') or 0:.0f} s once.",
        f"auto: {', '.join(f'{p} -> batch {b}' for p, b in knees.items())}",
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
