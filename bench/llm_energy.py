"""Generative energy per token (issue 16): an 8B-shaped decoder, bf16, on one GPU, by batch.

For each batch size, one full ``infergy run --workload llm`` session (idle baseline, warm-up,
an Offline LoadGen test with token latencies, NVML's energy counter and its 20-ms samples)
in its own process, then from its result.json:

  tokens/s and J/token        output tokens per second, window energy per output token
  prefill vs decode J/token   prefill energy per prompt token, decode energy per token made
                              (and how the split was made: resolved / fitted / time-share)
  TTFT / TPOT percentiles     p50 / p90 / p99, ms (every sample's first token and tokens)
  harness ratio               LoadGen's tokens/s (result_tokens_per_second) over the tight
                              generation loop at the same batch (the warm-up's continuous
                              batching without LoadGen or records: its steady tokens/s);
                              target >= 0.95
  energy closure              (prefill + decode) / window energy per source; the rest is
                              energy outside any step (idle gaps): within 1 % is the target

Writes DIR/llm_energy.json, DIR/llm_energy.md (a summary table) and DIR/llm_energy.png
(J/token vs batch, prefill and decode apart), and keeps every run's folder under DIR/runs/.

Usage (repository root; PYTHONPATH=. when infergy is not installed):
  python bench/llm_energy.py --out DIR                 # the GPU run: llama-8b-shape, bf16,
                                                       # batches 1,16,64, ~4-5 min on an H200
  python bench/llm_energy.py --out DIR --cpu-smoke     # tiny, fp32, on the CPU with the
                                                       # simulated meter: < 60 s, proves the
                                                       # pipeline, measures nothing
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLOSURE_TARGET = 0.01
HARNESS_TARGET = 0.95


def _config(out: Path) -> Path:
    cfg = out / "infergy.toml"
    cfg.write_text(
        f'[store]\npath = "{out / "store.db"}"\n[output]\ndir = "{out / "runs"}"\n'
        "[meters]\nrapl = false\n[session]\ntail_s = 1.0\nplots = true\n",
        encoding="utf-8",
    )
    return cfg


def _session(out: Path, args: argparse.Namespace, batch: int) -> dict[str, Any]:
    """One `infergy run` in its own process; its result (or why it has none)."""
    cmd = [
        sys.executable, "-m", "infergy", "run", "--config", str(_config(out)), "--json",
        "--workload", "llm", "--backend", "torch", "--model", args.model,
        "--precision", args.precision, "--batch-size", str(batch), "--scenario", "offline",
        "--duration", str(args.duration), "--warmup", str(args.warmup), "--idle", str(args.idle),
        "--input-tokens", args.input_tokens, "--output-tokens", args.output_tokens,
        *(["--gpus", args.gpu, "--meter", "nvml"] if not args.cpu_smoke else
          ["--meter", "sim"]),
    ]  # fmt: skip
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                       timeout=args.session_timeout)  # fmt: skip
    wall_s = time.monotonic() - t0
    (out / f"session_b{batch}.log").write_text(p.stderr, encoding="utf-8")
    if p.returncode not in (0, 3) or not p.stdout.strip():
        tail = p.stderr.strip().splitlines()[-3:]
        return {"batch": batch, "error": f"exit {p.returncode}: {' | '.join(tail)}",
                "wall_s": wall_s}  # fmt: skip
    return {"batch": batch, "result": json.loads(p.stdout), "wall_s": wall_s}


def _figures(run: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's figures of one session's result."""
    if "error" in run:
        return {"batch": run["batch"], "error": run["error"], "wall_s": run["wall_s"]}
    r = run["result"]
    gen = r.get("generative") or {}
    cal = (r["provenance"]["software"]["workload"].get("calibration")) or {}
    mlperf = r.get("mlperf") or {}
    lg_tps = mlperf.get("performance") if mlperf.get("performance_unit") == "Tokens/s" else None
    tight_tps = cal.get("tokens_per_s")
    sources = {}
    for name, s in (gen.get("sources") or {}).items():
        window = s.get("energy_joules")
        phases = (s.get("prefill_joules") or 0.0) + (s.get("decode_joules") or 0.0)
        closure = phases / window if window else None
        sources[name] = {
            "simulated": bool((r.get("power") or {}).get(name, {}).get("simulated")),
            "energy_joules": window,
            "energy_uncertainty_joules": (r.get("power") or {}).get(name, {}).get(
                "uncertainty_joules"
            ),
            **{k: s.get(k) for k in (
                "joules_per_output_token", "joules_per_output_token_uncertainty",
                "joules_per_prefill_token", "joules_per_prefill_token_uncertainty",
                "joules_per_decode_token", "joules_per_decode_token_uncertainty",
                "tokens_per_second_per_watt", "tokens_per_second_per_watt_uncertainty",
                "prefill_joules", "decode_joules", "other_joules", "split_method",
                "resolution_ms", "prefill_average_watts", "decode_average_watts")},
            "phases_over_window": closure,
            "closure_within_1pct": None if closure is None else abs(1 - closure) <= CLOSURE_TARGET,
        }  # fmt: skip
    return {
        "batch": run["batch"], "run_id": r["run_id"], "status": r["status"],
        "wall_s": run["wall_s"], "validity": (r.get("loadgen") or {}).get("validity"),
        "output_tokens": gen.get("output_tokens"), "prefill_tokens": gen.get("prefill_tokens"),
        "output_tokens_per_second": gen.get("output_tokens_per_second"),
        "mean_decode_batch": gen.get("mean_decode_batch"),
        "ttft_ms": gen.get("ttft_ms"), "tpot_ms": gen.get("tpot_ms"),
        "loadgen_tokens_per_second": lg_tps, "tight_loop_tokens_per_second": tight_tps,
        "harness_ratio": lg_tps / tight_tps if lg_tps and tight_tps else None,
        "sources": sources, "problems": r.get("problems"),
    }  # fmt: skip


def _f(v: float | None, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Generative energy per token: {report['model']} {report['precision']}",
        "",
        f"{report['machine']}; {report['date_utc']}; Offline, {report['duration_s']:g} s a run, "
        f"prompts {report['input_tokens']}, outputs {report['output_tokens']}; "
        f"total {report['wall_s']:.0f} s."
        + (" **SIMULATED meter (cpu-smoke): not a measurement.**" if report["cpu_smoke"] else ""),
        "",
        "| batch | source | tokens/s | J/token | J/prefill tok | J/decode tok | tokens/s/W | "
        "(prefill+decode)/window | split | TTFT p50/p99 ms | TPOT p50/p99 ms | harness |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in report["batches"]:
        if "error" in b:
            lines.append(f"| {b['batch']} | — | {b['error']} |" + " |" * 9)
            continue
        ttft, tpot = b["ttft_ms"] or {}, b["tpot_ms"] or {}
        for name, s in b["sources"].items():
            star = "*" if s["simulated"] else ""
            lines.append(
                f"| {b['batch']} | {name}{star} | {_f(b['output_tokens_per_second'], ',.0f')} | "
                f"{_f(s['joules_per_output_token'], '.4g')} ± "
                f"{_f(s['joules_per_output_token_uncertainty'], '.2g')} | "
                f"{_f(s['joules_per_prefill_token'], '.3g')} | "
                f"{_f(s['joules_per_decode_token'], '.3g')} | "
                f"{_f(s['tokens_per_second_per_watt'], '.3g')} | "
                f"{_f(s['phases_over_window'], '.4f')} | {s['split_method']} | "
                f"{_f(ttft.get('p50'), '.0f')} / {_f(ttft.get('p99'), '.0f')} | "
                f"{_f(tpot.get('p50'), '.1f')} / {_f(tpot.get('p99'), '.1f')} | "
                f"{_f(b['harness_ratio'], '.3f')} |"
            )
    lines += [
        "",
        f"harness = LoadGen tokens/s / tight-loop tokens/s at the same batch (target >= "
        f"{HARNESS_TARGET}); (prefill+decode)/window: the phases' share of the window's energy "
        f"(target within {CLOSURE_TARGET:.0%}). * SIMULATED source.",
    ]
    return "\n".join(lines) + "\n"


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib as mpl

    mpl.use("Agg", force=True)
    import matplotlib.pyplot as plt

    ok = [b for b in report["batches"] if "error" not in b]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    names = sorted({n for b in ok for n in b["sources"]})
    for name in names:
        xs = [b["batch"] for b in ok if name in b["sources"]]
        for key, style, what in (("joules_per_output_token", "o-", "J/output token"),
                                 ("joules_per_prefill_token", "s--", "J/prefill token"),
                                 ("joules_per_decode_token", "^:", "J/decode token")):  # fmt: skip
            ys = [b["sources"][name][key] for b in ok if name in b["sources"]]
            if any(y is not None for y in ys):
                sim = " (SIMULATED)" if ok[0]["sources"].get(name, {}).get("simulated") else ""
                ax.plot(xs, [float("nan") if y is None else y for y in ys], style,
                        label=f"{name}{sim} {what}")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch (KV cache slots)")
    ax.set_ylabel("joules per token")
    ax.set_title(f"{report['model']} {report['precision']}: energy per token vs batch", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _machine(cpu_smoke: bool) -> str:
    if cpu_smoke:
        return f"CPU ({os.cpu_count()} cores)"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,"
                              "noheader"], capture_output=True, text=True, check=False, timeout=10)  # fmt: skip
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown GPU"
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="tiny on the CPU, simulated meter (< 60 s): the pipeline only")  # fmt: skip
    ap.add_argument("--model", help="default llama-8b-shape (tiny with --cpu-smoke)")
    ap.add_argument("--precision", help="default bf16 (fp32 with --cpu-smoke)")
    ap.add_argument("--batches", help="default 1,16,64 (2,8 with --cpu-smoke)")
    ap.add_argument("--gpu", default="0")
    ap.add_argument("--duration", type=float, help="measured seconds a batch (default 15; 4)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds (default 6; 2)")
    ap.add_argument("--idle", type=float, default=1.0)
    ap.add_argument("--input-tokens", help="default normal:512:128 (16:64)")
    ap.add_argument("--output-tokens", help="default normal:128:32 (8:32)")
    ap.add_argument("--session-timeout", type=float, default=150.0, help="one batch at most (s)")
    args = ap.parse_args()
    smoke = args.cpu_smoke
    defaults = {
        "model": ("llama-8b-shape", "tiny"), "precision": ("bf16", "fp32"),
        "batches": ("1,16,64", "2,8"), "duration": (15.0, 4.0), "warmup": (6.0, 2.0),
        "input_tokens": ("normal:512:128", "16:64"), "output_tokens": ("normal:128:32", "8:32"),
    }  # fmt: skip
    for key, (gpu, cpu) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, cpu if smoke else gpu)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    batches = []
    for b in (int(x) for x in args.batches.split(",")):
        run = _session(out, args, b)
        batches.append(_figures(run))
        print(f"batch {b}: {'error ' + run['error'] if 'error' in run else 'done'} "
              f"({run['wall_s']:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    report = {
        "benchmark": "llm_energy", "model": args.model, "precision": args.precision,
        "cpu_smoke": smoke, "machine": _machine(smoke),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "duration_s": args.duration, "warmup_s": args.warmup,
        "input_tokens": args.input_tokens, "output_tokens": args.output_tokens,
        "wall_s": time.monotonic() - t0, "batches": batches,
        "targets": {"harness_ratio_min": HARNESS_TARGET, "closure_within": CLOSURE_TARGET},
    }  # fmt: skip
    (out / "llm_energy.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "llm_energy.md").write_text(_markdown(report), encoding="utf-8")
    _plot(report, out / "llm_energy.png")
    print((out / "llm_energy.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
