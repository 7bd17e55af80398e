"""Benchmark of the NVML meter on a real GPU (issue 3; results go to BENCHMARKS.md).

Sections (``--sections abcde``, all by default):
  a  the cost of each NVML call the meter uses: median wall and thread-CPU µs over many calls
  b  update periods: energy counter, driver power samples, the instant and 1-s average fields;
     and the CPU cost of one energy-counter read by where it lands after a counter update
  c  the meter's CPU use at its default rates, and with counter_poll_factor=2: process CPU
     time / wall over --idle-seconds on idle GPUs, as % of one core, per GPU (target <= 2 %)
  d  a real load, ResNet-50 (torchvision, random weights, fp16, channels_last), offline batch 256
     and single-stream batch 1, --duration s each: window energy from the energy counter, the
     20-ms samples, the 1-s average field (interval mean) and nvmlDeviceGetPowerUsage polled at
     50 Hz (integrated as instants, the naive way), side by side with ratios to the counter
  e  interference: throughput with the meter running vs not, --ab-pairs interleaved pairs of
     short --ab-seconds runs (ABBA order), offline (GPU-bound, steady) and single-stream (CPU-
     bound, noisy: +-15 % run to run on the lent H100 VM): the median of the pair ratios with
     a bootstrap 95 % interval

Usage (repository root; PYTHONPATH=. when infergy is not installed):
  python bench/nvml_meter.py --out nvml_bench.json [--duration 25] [--ab-pairs 12]
Default total: about 5.5 minutes on one H100. Without NVML or a GPU it prints why and exits 0
(writing {"skipped": reason}). Without torch, sections d and e are skipped; without
torchvision they use a matmul load (said in the output). READ-ONLY: no NVML setter is called.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _nvml_probes as probes
import pynvml
from _sections import Step, run_sections

from infergy.core.clock import SessionClock
from infergy.core.energy import window_energy
from infergy.core.trace import Semantics, Trace, Window
from infergy.meters.nvml import NvmlMeter, NvmlMeterConfig
from infergy.meters.nvml_device import NvmlLibrary


def section_c_cpu(clock: SessionClock, idle_s: float) -> dict[str, Any]:
    """Process CPU / wall with the meter running on idle GPUs, minus the same without it."""
    from _gpu_load import MeterThread

    base_cpu0, base_w0 = time.process_time(), time.perf_counter()
    time.sleep(5.0)
    base = (time.process_time() - base_cpu0) / (time.perf_counter() - base_w0)
    out: dict[str, Any] = {"baseline_pct_of_one_core": 100 * base}
    for label, config in (
        ("default (counter read every update)", NvmlMeterConfig()),
        ("counter_poll_factor=2", NvmlMeterConfig(counter_poll_factor=2.0)),
        ("counter_poll_factor=10 (serve, between runs)", NvmlMeterConfig(counter_poll_factor=10.0)),
    ):
        with NvmlMeter.open(clock=clock, config=config) as meter:
            n = len(meter.gpus)
            with MeterThread(meter):
                time.sleep(1.0)
                cpu0, w0 = time.process_time(), time.perf_counter()
                time.sleep(idle_s / 2)
                cpu_half, w_half = time.process_time(), time.perf_counter()
                time.sleep(idle_s / 2)
                cpu_end, w_end = time.process_time(), time.perf_counter()
            cpu, wall = cpu_end - cpu0, w_end - w0
            pct = 100 * (cpu / wall - base)
            late = 100 * ((cpu_end - cpu_half) / (w_end - w_half) - base)  # re-syncs settled
            out[label] = {
                "gpus": n,
                "wall_s": wall,
                "process_cpu_s": cpu,
                "meter_pct_of_one_core": pct,
                "meter_pct_of_one_core_per_gpu": pct / n,
                "second_half_pct_of_one_core_per_gpu": late / n,
                "counter_values_stored": {s: len(meter.snapshot(s)) for s in meter.gpus},
                "nominal_periods_ms": {i.name: i.nominal_period_ns / 1e6 for i in meter.describe()},
            }
    return out


def _energies(meter: NvmlMeter, poll: Any, window: Window) -> dict[str, Any]:
    polled = Trace(
        np.array(poll.t_ns, dtype=np.int64),
        np.array(poll.mw, dtype=float) / 1e3,
        Semantics.INSTANT,
        20_000_000,
    )
    sources = {
        "counter (gpu0)": meter.snapshot("gpu0"),
        "samples 20 ms (gpu0.samples)": meter.snapshot("gpu0.samples"),
        "average field 1 Hz, interval mean (gpu0.avg)": meter.snapshot("gpu0.avg"),
        "nvmlDeviceGetPowerUsage 50 Hz, trapezoid": polled,
    }
    out: dict[str, Any] = {}
    ref = None
    for name, trace in sources.items():
        we = window_energy(trace, window)
        ref = we.energy_j if ref is None else ref
        out[name] = {
            "energy_j": we.energy_j,
            "average_w": we.energy_j / window.duration_s,
            "coverage": we.coverage,
            "samples": we.samples,
            "ratio_to_counter": we.energy_j / ref if ref else None,
        }
    return out


def section_d_energy(
    workload: Any, clock: SessionClock, uuid: str, handle: Any, duration_s: float
) -> dict[str, Any]:
    from _gpu_load import MeterThread, PowerUsagePoller

    out: dict[str, Any] = {"load": workload.kind}
    with NvmlMeter.open(clock=clock, env={"CUDA_VISIBLE_DEVICES": uuid}) as meter:
        for scenario in ("offline", "single-stream"):
            with MeterThread(meter), PowerUsagePoller(handle, clock) as poll:
                workload.run(scenario, 5.0, clock)  # warm-up, not measured
                result = workload.run(scenario, duration_s, clock)
                time.sleep(2.0)  # tail: the interval samples covering the end arrive
            window = Window(result.start_ns, result.end_ns)
            lat = np.array(result.latencies_s) * 1e3
            out[scenario] = {
                "batch": result.samples // max(1, result.queries),
                "window_s": result.duration_s,
                "queries": result.queries,
                "samples_per_s": result.samples_per_s,
                "latency_ms_p50": float(np.percentile(lat, 50)),
                "latency_ms_p99": float(np.percentile(lat, 99)),
                "energy": _energies(meter, poll, window),
            }
    return out


def section_e_interference(
    workload: Any, clock: SessionClock, uuid: str, pairs: int, seconds: float, scenarios: str
) -> dict[str, Any]:
    """Interference per scenario (``both``: offline, then single-stream)."""
    names = ("offline", "single-stream") if scenarios == "both" else (scenarios,)
    return {n: _interference(workload, clock, uuid, pairs, seconds, n) for n in names}


def _interference(
    workload: Any,
    clock: SessionClock,
    uuid: str,
    pairs: int,
    seconds: float,
    scenario: str,
    config: NvmlMeterConfig | None = None,
) -> dict[str, Any]:
    """Many short interleaved runs with and without the meter (ABBA order, 0.5 s to settle).

    Single-stream PyTorch throughput drifts by +-10 % over tens of seconds on its own, so the
    runs are short and paired: each pair's ratio sees the same drift on both sides.
    """
    from _gpu_load import MeterThread

    with_meter: list[float] = []
    without: list[float] = []
    with NvmlMeter.open(clock=clock, config=config, env={"CUDA_VISIBLE_DEVICES": uuid}) as meter:
        workload.run(scenario, 5.0, clock)  # warm-up
        for i in range(pairs):
            for on in (True, False) if i % 2 == 0 else (False, True):
                if on:
                    with MeterThread(meter):
                        time.sleep(0.5)
                        with_meter.append(workload.run(scenario, seconds, clock).samples_per_s)
                else:
                    time.sleep(0.5)
                    without.append(workload.run(scenario, seconds, clock).samples_per_s)
    ratios = np.array(with_meter) / np.array(without)
    rng = np.random.default_rng(0)
    boot = np.median(rng.choice(ratios, size=(4000, ratios.size), replace=True), axis=1)
    return {
        "scenario": scenario,
        "pairs": pairs,
        "seconds_each": seconds,
        "samples_per_s_with_meter": with_meter,
        "samples_per_s_without": without,
        "ratio_median_of_pairs": float(np.median(ratios)),
        "ratio_median_ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
        "ratio_of_means": statistics.fmean(with_meter) / statistics.fmean(without),
        "run_to_run_cv_without": float(np.std(without) / np.mean(without)),
        "target": ">= 0.995",
    }


def _summary(results: dict[str, Any]) -> str:
    lines = [
        f"== NVML meter benchmark: {results['meta'].get('gpu')} (driver {results['meta'].get('driver')})"
    ]
    for name, c in (results.get("a_call_costs") or {}).items():
        if "error" in c:
            lines.append(f"  a  {name:<46} {c['error']}")
        else:
            lines.append(
                f"  a  {name:<46} {c['wall_us_median']:9.1f} µs wall  {c['thread_cpu_us_median']:9.1f} µs CPU (median of {c['calls']})"
            )
    for name, p in (results.get("b_periods") or {}).items():
        lines.append(f"  b  {name:<24} {json.dumps(p)}")
    for name, p in (results.get("b_counter_cost_by_phase") or {}).items():
        lines.append(f"  b  counter read {name:<22} {json.dumps(p)}")
    for label, c in (results.get("c_cpu") or {}).items():
        if isinstance(c, dict) and "meter_pct_of_one_core_per_gpu" in c:
            lines.append(
                f"  c  meter CPU {c['meter_pct_of_one_core_per_gpu']:.2f} % of one core per GPU (second half {c['second_half_pct_of_one_core_per_gpu']:.2f} %), {label} ({c['gpus']} GPU(s), {c['wall_s']:.0f} s idle; target <= 2 %)"
            )
    d = results.get("d_energy") or {}
    if "load" in d:
        lines.append(f"  d  load: {d['load']}")
    for scenario in ("offline", "single-stream"):
        if scenario in d:
            s = d[scenario]
            lines.append(
                f"  d  {scenario} batch {s['batch']}: {s['window_s']:.1f} s, {s['samples_per_s']:.1f} samples/s, p50 {s['latency_ms_p50']:.2f} ms"
            )
            for src, e in s["energy"].items():
                lines.append(
                    f"  d     {src:<46} {e['energy_j']:10.1f} J  {e['average_w']:7.1f} W  x{e['ratio_to_counter']:.4f}  cov {e['coverage']:.3f}"
                )
    for e in (results.get("e_interference") or {}).values():
        if not isinstance(e, dict) or "ratio_median_ci95" not in e:
            continue
        lo, hi = e["ratio_median_ci95"]
        lines.append(
            f"  e  throughput with/without meter ({e['scenario']}, {e['pairs']} pairs x {e['seconds_each']:g} s): median of pair ratios {e['ratio_median_of_pairs']:.4f} (95% CI {lo:.4f}-{hi:.4f}; ratio of means {e['ratio_of_means']:.4f}; run-to-run CV {100 * e['run_to_run_cv_without']:.1f} %; target >= 0.995)"
        )
    for key, val in results.items():
        if isinstance(val, dict) and "error" in val and len(val) == 1:
            lines.append(f"  {key}: ERROR {val['error']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("nvml_bench.json"), help="JSON results path")
    ap.add_argument("--sections", default="abcde", help="which sections to run (default abcde)")
    ap.add_argument("--gpu", type=int, default=0, help="CUDA device for the load (default 0)")
    ap.add_argument(
        "--duration",
        type=float,
        default=25.0,
        help="seconds per load scenario in d (>= 20 for the record)",
    )
    ap.add_argument(
        "--idle-seconds", type=float, default=16.0, help="idle seconds for the CPU measure in c"
    )
    ap.add_argument(
        "--ab-pairs", type=int, default=12, help="interleaved A/B pairs per scenario in e"
    )
    ap.add_argument("--ab-seconds", type=float, default=3.0, help="seconds per run in e")
    ap.add_argument(
        "--ab-scenario",
        choices=("both", "single-stream", "offline", "single-stream-graph"),
        default="both",
    )
    args = ap.parse_args(argv)

    def write(results: dict[str, Any]) -> None:
        args.out.write_text(json.dumps(results, indent=2, default=str))

    try:
        library = NvmlLibrary().open()
        gpus, _notes = library.visible_gpus()
        if not gpus:
            raise RuntimeError("NVML sees no visible GPU")
    except Exception as err:
        print(f"nvml_meter bench skipped: {err}")
        write({"skipped": str(err)})
        return 0
    torch: Any = None
    uuid = gpus[0].identity.uuid
    try:
        import torch as _torch

        if _torch.cuda.is_available():
            torch = _torch
            props_uuid = getattr(torch.cuda.get_device_properties(args.gpu), "uuid", None)
            uuid = f"GPU-{props_uuid}" if props_uuid else gpus[args.gpu].identity.uuid
    except ImportError:
        pass
    gpu = next(g for g in gpus if g.identity.uuid == uuid)
    versions = library.versions()
    results: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d"),
            "gpu": gpu.identity.name,
            "uuid": uuid,
            "driver": versions.driver,
            "cuda_driver": versions.cuda_driver,
            "nvml_binding": getattr(pynvml, "__version__", "?"),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch": getattr(torch, "__version__", None),
            "args": {k: str(v) for k, v in vars(args).items()},
        }
    }
    clock = SessionClock()
    steps: list[Step] = [
        ("a", "a_call_costs", lambda: probes.call_costs(gpu)),
        ("b", "b_periods", lambda: probes.update_periods(gpu)),
        ("b", "b_counter_cost_by_phase", lambda: probes.counter_cost_by_phase(gpu)),
        ("c", "c_cpu", lambda: section_c_cpu(clock, args.idle_seconds)),
    ]
    workload: Any = None
    if torch is not None and {"d", "e"} & set(args.sections):
        from _gpu_load import Workload

        workload = Workload(torch, args.gpu)
        results["meta"]["load"] = workload.kind
        steps.append(
            (
                "d",
                "d_energy",
                lambda: section_d_energy(workload, clock, uuid, gpu.handle, args.duration),
            )
        )
        steps.append(
            (
                "e",
                "e_interference",
                lambda: section_e_interference(
                    workload, clock, uuid, args.ab_pairs, args.ab_seconds, args.ab_scenario
                ),
            )
        )
    elif {"d", "e"} & set(args.sections):
        results["d_energy"] = results["e_interference"] = {
            "skipped": "PyTorch with CUDA is not available"
        }
    run_sections(steps, args.sections, results, write)
    library.close()
    print(_summary(results))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
