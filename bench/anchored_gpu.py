"""Counter-anchored energy on a real GPU (issue 19; results go to BENCHMARKS.md). Read-only.

Side by side in one run, on one GPU, three loads (torchvision ResNet-50, random weights, fp16,
channels_last, through bench/_gpu_load.py as bench/nvml_meter.py drives it): offline batch
256, single-stream batch 1, and a bursty load alternating 200 ms of batch-64 inference with
200 ms idle. Two NVML meters sample the GPU at once: the reference reads the energy counter at
every update (``counter_sparse_interval_s = 0``); the anchored one reads it every ~1 s, at
every update for 0.5 s around each window edge (as a session asks), and its 20-ms samples
give the shape in between. Sections:

  energy      per load: window energy of the anchored curve vs the every-update counter
              (target within 0.1 %), with the anchored uncertainty, the anchoring scale and
              drift, the sparse counter alone and the samples alone for contrast; 40 random
              sub-windows (2-10 s, edges between sparse reads); per-query energy distributions
              of both (per burst too for the bursty load); and evidence on whether the 20-ms
              samples are instants or 20-ms means (which timing the every-update counter
              agrees with best)
  cpu         the meter's CPU per GPU during an offline run (after 10 s of settling, with
              dense edges), as the thread CPU time of its worker and event-loop threads:
              anchored vs every update (target <= 1 % of one core); counter reads per second
  throughput  samples/s with the anchored meter vs without, interleaved ABBA pairs of short
              runs (bench/nvml_meter.py's method), offline and single-stream (target >= 0.995)

Usage (repository root; PYTHONPATH=. when infergy is not installed):
  python bench/anchored_gpu.py --out DIR [--seconds 30] [--ab-pairs 6] [--sections ect]
Writes DIR/anchored_gpu.json and DIR/anchored_gpu.txt (the summary, also printed). About 5
minutes on one H200. Without NVML, a GPU or CUDA PyTorch it says why, writes
{"skipped": reason} and exits 0. READ-ONLY: no NVML setter is called.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sections import Step, run_sections

from infergy.core.analysis import analyze
from infergy.core.anchored import anchor
from infergy.core.attribution import InFlight
from infergy.core.clock import SessionClock
from infergy.core.energy import window_energy
from infergy.core.inputs import SourceInput, Workload, pair_samples
from infergy.core.profile import PowerProfile
from infergy.core.trace import NS_PER_S, QueryLog, Scenario, Semantics, Trace, Window
from infergy.meters.nvml import NvmlMeter, NvmlMeterConfig
from infergy.meters.nvml_device import NvmlLibrary

LOADS = ("offline", "single-stream", "bursty")
REFERENCE = NvmlMeterConfig(counter_sparse_interval_s=0.0)
ANCHORED = NvmlMeterConfig(counter_sparse_interval_s=1.0, counter_dense_span_s=0.5)
TAIL_S = 2.0


def _run_load(workload: Any, load: str, seconds: float, clock: SessionClock) -> Any:
    if load == "bursty":
        return workload.run_bursty(seconds, clock)
    return workload.run(load, seconds, clock)


def _queries(result: Any) -> QueryLog:
    n = len(result.issue_ns)
    return QueryLog(
        np.array(result.issue_ns, dtype=np.int64),
        np.array(result.complete_ns, dtype=np.int64),
        np.full(n, result.batch, dtype=np.int64),
    )


def _pcts(x: np.ndarray) -> dict[str, float] | None:
    if x.size == 0:
        return None
    p = [float(v) for v in np.percentile(x, [10, 50, 90, 99])]
    return {"p10": p[0], "p50": p[1], "p90": p[2], "p99": p[3], "mean": float(x.mean())}


def _rel(a: np.ndarray, b: np.ndarray) -> dict[str, float] | None:
    """|a / b - 1| over pairs with b > 0: median, p90, p99 (in %)."""
    ok = b > 0
    if not np.any(ok):
        return None
    r = np.abs(a[ok] / b[ok] - 1.0) * 100
    return {"median_pct": float(np.median(r)), "p90_pct": float(np.percentile(r, 90)),
            "p99_pct": float(np.percentile(r, 99))}  # fmt: skip


def _bursts(q: QueryLog, gap_ns: int = 100_000_000) -> list[np.ndarray]:
    """Indices of the queries of each busy stretch (a gap > 100 ms between them ends one)."""
    breaks = np.flatnonzero(q.issue_ns[1:] - q.complete_ns[:-1] > gap_ns) + 1
    return np.split(np.arange(len(q)), breaks)


def _sub_windows(
    window: Window, ref: Trace, curve: Trace, sparse: Trace, rng: np.random.Generator
) -> dict[str, Any]:
    """Random 2-10 s windows inside the run: edges fall between sparse reads (the shape)."""
    if window.duration_s < 14.0:
        return {"windows": 0, "anchored_vs_ref": None, "sparse_counter_vs_ref": None}
    a_s = (window.duration_s - 12.0) * rng.random(40) + 1.0
    lengths = rng.uniform(2.0, 10.0, 40)
    rows = []
    for a, n in zip(a_s, lengths, strict=True):
        if a + n > window.duration_s - 1.0:
            continue
        w = Window(
            window.start_ns + round(a * NS_PER_S), window.start_ns + round((a + n) * NS_PER_S)
        )
        rows.append([window_energy(t, w).energy_j for t in (ref, curve, sparse)])
    e = np.array(rows).reshape(-1, 3)
    return {"windows": int(e.shape[0]), "anchored_vs_ref": _rel(e[:, 1], e[:, 0]),
            "sparse_counter_vs_ref": _rel(e[:, 2], e[:, 0])}  # fmt: skip


def _semantics_probe(ref_counter: Trace, samples: Trace, window: Window) -> dict[str, Any]:
    """Are the 20-ms samples instants or 20-ms means? (unverified; the meter says instants)

    The every-update counter anchors the samples read as each candidate timing; the one whose
    per-interval scales scatter least (``scale_spread``, 100-ms intervals) describes them best:
    instants at their timestamps, shifted by -20..+20 ms, or means over the 20 ms before each.
    """
    inside = ref_counter.between(window.start_ns - NS_PER_S, window.end_ns + NS_PER_S)
    out: dict[str, Any] = {}
    candidates = {
        f"instant_{ms:+d}ms": samples.shifted(ms * 1_000_000) for ms in (-20, -10, 0, 10, 20)
    }
    candidates["interval_mean"] = Trace(
        samples.t_ns, samples.values, Semantics.INTERVAL_MEAN, samples.nominal_period_ns
    )
    for name, trace in candidates.items():
        curve = anchor(inside, trace, shrink=False)
        out[name] = curve.scale.spread
    spreads = {k: v for k, v in out.items() if v is not None}
    out["best"] = min(spreads, key=spreads.__getitem__) if spreads else None
    return out


def _compare(load: str, ref: NvmlMeter, anc: NvmlMeter, result: Any) -> dict[str, Any]:
    q = _queries(result)
    window = Window.of_queries(q)
    ref_counter = ref.snapshot("gpu0")
    counter, samples = anc.snapshot("gpu0"), anc.snapshot("gpu0.samples")
    period = {i.name: i.nominal_period_ns for i in anc.describe()}
    wl = Workload.of_queries(Scenario.SINGLE_STREAM, q)  # rows as queries, whatever the load
    ident = {"run_id": f"bench-{load}"}
    r_ref = analyze([SourceInput("gpu0", "nvml", ref_counter, update_period_ns=period["gpu0"])],
                    wl, window, identity=ident).result  # fmt: skip
    a = analyze(
        pair_samples([
            SourceInput("gpu0", "nvml", counter, update_period_ns=period["gpu0"]),
            SourceInput("gpu0.samples", "nvml", samples, update_period_ns=period["gpu0.samples"]),
        ]),
        wl, window, identity=ident,
    )  # fmt: skip
    p_ref, p_anc = r_ref["power"]["gpu0"], a.result["power"]["gpu0"]
    e_ref, e_anc = p_ref["energy_joules"], p_anc["energy_joules"]
    curve = a.anchored["gpu0"]
    diff_j = e_anc - e_ref
    u_anc, u_ref = p_anc["uncertainty_joules"], p_ref["uncertainty_joules"]
    flight = InFlight.of(q)
    q_ref = flight.apportion(PowerProfile.of(ref_counter), window).per_query_j
    q_anc = flight.apportion(curve.profile, window).per_query_j
    out: dict[str, Any] = {
        "batch": result.batch,
        "window_s": window.duration_s,
        "queries": len(q),
        "samples_per_s": result.samples_per_s,
        "energy": {
            "reference_counter_j": e_ref,
            "anchored_j": e_anc,
            "anchored_over_reference": e_anc / e_ref,
            "diff_pct": 100 * diff_j / e_ref,
            "target_pct": 0.1,
            "anchored_uncertainty_j": u_anc,
            "anchored_uncertainty_parts_j": p_anc["uncertainty_parts_joules"],
            "reference_uncertainty_j": u_ref,
            "diff_within_uncertainties": abs(diff_j) <= float(np.hypot(u_anc, u_ref)),
            "sparse_counter_alone_over_reference": window_energy(counter, window).energy_j / e_ref,
            "samples_alone_over_reference": window_energy(samples, window).energy_j / e_ref,
            "coverage": p_anc["coverage"],
        },
        "anchoring": p_anc["anchoring"],
        "reads_per_s": {
            "anchored_meter": p_anc["samples"] / window.duration_s,
            "reference_meter": p_ref["samples"] / window.duration_s,
        },
        "sub_windows": _sub_windows(
            window, ref_counter, curve.trace, counter, np.random.default_rng(19)
        ),
        "per_query_j": {
            "reference": _pcts(q_ref),
            "anchored": _pcts(q_anc),
            "anchored_vs_reference": _rel(q_anc, q_ref),
        },
        "problems": [p for p in a.result["problems"] if "gpu0" in p],
        "samples_semantics_probe": _semantics_probe(ref_counter, samples, window),
    }
    if load == "bursty":
        groups = [g for g in _bursts(q) if g.size][1:-1]  # whole bursts only
        b_ref = np.array([q_ref[g].sum() for g in groups])
        b_anc = np.array([q_anc[g].sum() for g in groups])
        out["per_burst_j"] = {"bursts": len(groups), "reference": _pcts(b_ref),
                              "anchored": _pcts(b_anc), "anchored_vs_reference": _rel(b_anc, b_ref)}  # fmt: skip
    return out


def section_energy(workload: Any, clock: SessionClock, uuid: str, seconds: float) -> dict[str, Any]:
    """Both meters at once over each load: a session's edges (dense just before and after)."""
    from _gpu_load import MeterThread

    env = {"CUDA_VISIBLE_DEVICES": uuid}
    out: dict[str, Any] = {}
    with (
        NvmlMeter.open(clock=clock, config=REFERENCE, env=env) as ref,
        NvmlMeter.open(clock=clock, config=ANCHORED, env=env) as anc,
        MeterThread(ref),
        MeterThread(anc),
    ):
        workload.run("offline", 10.0, clock)  # settle clocks, caches and the meters' re-syncs
        for load in LOADS:
            _run_load(workload, load, 3.0, clock)  # warm-up, straight into the run (a session)
            anc.dense_counter(0.5)  # the run starts now: dense until 0.5 s after its first query
            result = _run_load(workload, load, seconds, clock)
            anc.dense_counter(0.5)  # its end: dense in the tail
            time.sleep(TAIL_S)
            out[load] = _compare(load, ref, anc, result)
            print(f"[energy] {load}: anchored/reference "
                  f"{out[load]['energy']['anchored_over_reference']:.5f}", flush=True)  # fmt: skip
    return out


def _thread_cpu_s(threads: list[threading.Thread]) -> float:
    total = 0.0
    for t in threads:
        if t.ident is not None and t.is_alive():
            total += time.clock_gettime(time.pthread_getcpuclockid(t.ident))
    return total


def section_cpu(
    workload: Any, clock: SessionClock, uuid: str, settle_s: float, measure_s: float
) -> dict[str, Any]:
    """Thread CPU of one meter's worker and event-loop threads during an offline run."""
    from _gpu_load import MeterThread

    env = {"CUDA_VISIBLE_DEVICES": uuid}
    out: dict[str, Any] = {}
    for label, config in (("anchored", ANCHORED), ("every_update", REFERENCE)):
        before = set(threading.enumerate())  # Thread objects: thread idents are reused
        with NvmlMeter.open(clock=clock, config=config, env=env) as meter, MeterThread(meter):
            threads = [t for t in threading.enumerate() if t not in before]
            workload.run("offline", settle_s, clock)  # the idle baseline and warm-up's place
            cpu0, wall0, reads0 = _thread_cpu_s(threads), time.perf_counter(), meter.counter_reads()
            meter.dense_counter(0.5)
            result = workload.run("offline", measure_s, clock)
            meter.dense_counter(0.5)
            time.sleep(0.6)
            cpu1, wall1, reads1 = _thread_cpu_s(threads), time.perf_counter(), meter.counter_reads()
        wall = wall1 - wall0
        reads = sum(reads1.values()) - sum(reads0.values())
        out[label] = {
            "gpus": len(reads1),
            "threads": [t.name for t in threads],
            "wall_s": wall,
            "meter_thread_cpu_s": cpu1 - cpu0,
            "pct_of_one_core_per_gpu": 100 * (cpu1 - cpu0) / wall / max(1, len(reads1)),
            "counter_reads_per_s": reads / wall,
            "samples_per_s_of_the_load": result.samples_per_s,
        }
    a, e = out["anchored"], out["every_update"]
    out["anchored_over_every_update"] = {
        "cpu": a["meter_thread_cpu_s"] / e["meter_thread_cpu_s"]
        if e["meter_thread_cpu_s"]
        else None,
        "counter_reads": a["counter_reads_per_s"] / e["counter_reads_per_s"],
    }
    out["target_pct_of_one_core_per_gpu"] = 1.0
    return out


def section_throughput(
    workload: Any, clock: SessionClock, uuid: str, pairs: int, seconds: float
) -> dict[str, Any]:
    from nvml_meter import _interference

    return {s: _interference(workload, clock, uuid, pairs, seconds, s, config=ANCHORED)
            for s in ("offline", "single-stream")}  # fmt: skip


def _dist(d: dict[str, float] | None) -> str:
    """Percentiles (J) or relative differences (%) in a few characters."""
    if not d:
        return "-"
    if "median_pct" in d:
        return (
            f"median {d['median_pct']:.3f} % / p90 {d['p90_pct']:.3f} % / p99 {d['p99_pct']:.3f} %"
        )
    return " / ".join(f"{k} {v:.4g}" for k, v in d.items() if k in ("p10", "p50", "p99", "mean"))


def _num(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "MISSED")


def summary(results: dict[str, Any]) -> str:
    m = results["meta"]
    lines = [f"== anchored energy: {m.get('gpu')} (driver {m.get('driver')}), {m.get('date')}, "
             f"{m.get('load')}"]  # fmt: skip
    for load, r in (results.get("energy") or {}).items():
        if not isinstance(r, dict) or "energy" not in r:
            lines.append(f"  energy {load}: {r}")
            continue
        e, an, sw = r["energy"], r["anchoring"] or {}, r["sub_windows"]
        sc = an.get("scale") or {}
        lines.append(
            f"  energy {load:<13} {r['window_s']:5.1f} s  ref {e['reference_counter_j']:9.1f} J  "
            f"anchored x{e['anchored_over_reference']:.5f} ({e['diff_pct']:+.3f} %, u "
            f"{100 * e['anchored_uncertainty_j'] / e['reference_counter_j']:.3f} %; target 0.1 %: "
            f"{_mark(abs(e['diff_pct']) <= 0.1)})  sparse counter x"
            f"{e['sparse_counter_alone_over_reference']:.5f}  samples x"
            f"{e['samples_alone_over_reference']:.5f}"
        )
        lines.append(
            f"         scale {_num(sc.get('scale'), '.5f')} +- "
            f"{_num(sc.get('scale_uncertainty'), '.5f')} drifted {an.get('drifted')}, median "
            f"shape weight {_num(an.get('median_shape_weight'), '.2f')}, noise "
            f"{_num(an.get('noise_watts'), '.1f')} W, counter reads/s "
            f"{r['reads_per_s']['anchored_meter']:.2f} (reference {r['reads_per_s']['reference_meter']:.2f})"
        )
        lines.append(
            f"         {sw['windows']} sub-windows 2-10 s, |x/ref - 1|: anchored "
            f"{_dist(sw['anchored_vs_ref'])}; sparse counter {_dist(sw['sparse_counter_vs_ref'])}"
        )
        sp = r.get("samples_semantics_probe") or {}
        lines.append(
            "         samples timing (per-interval scale spread vs the every-update counter): "
            + ", ".join(f"{k} {v:.5f}" for k, v in sp.items() if isinstance(v, float))
            + f"; best {sp.get('best')}"
        )
        pq = r["per_query_j"]
        lines.append(f"         per query ({r['queries']}, J): ref {_dist(pq['reference'])}; anchored "
                     f"{_dist(pq['anchored'])}; |anchored/ref - 1| {_dist(pq['anchored_vs_reference'])}")  # fmt: skip
        if "per_burst_j" in r:
            b = r["per_burst_j"]
            lines.append(f"         per burst ({b['bursts']}, J): ref {_dist(b['reference'])}; anchored "
                         f"{_dist(b['anchored'])}; |anchored/ref - 1| {_dist(b['anchored_vs_reference'])}")  # fmt: skip
    c = results.get("cpu") or {}
    for label in ("anchored", "every_update"):
        if label in c:
            x = c[label]
            target = (
                f"; target 1 %: {_mark(x['pct_of_one_core_per_gpu'] <= 1.0)}"
                if label == "anchored"
                else ""
            )
            lines.append(f"  cpu    {label:<13} {x['pct_of_one_core_per_gpu']:.3f} % of one core per "
                         f"GPU, {x['counter_reads_per_s']:.2f} counter reads/s over {x['wall_s']:.0f} s"
                         f"{target}")  # fmt: skip
    if "anchored_over_every_update" in c:
        ratio = c["anchored_over_every_update"]
        lines.append(f"  cpu    anchored / every update: CPU x{_num(ratio['cpu'], '.3f')}, counter "
                     f"reads x{ratio['counter_reads']:.3f}")  # fmt: skip
    for s, t in (results.get("throughput") or {}).items():
        if isinstance(t, dict) and "ratio_median_ci95" in t:
            lo, hi = t["ratio_median_ci95"]
            lines.append(
                f"  thru   {s:<13} with/without the anchored meter: median of {t['pairs']} pair "
                f"ratios {t['ratio_median_of_pairs']:.4f} (95 % CI {lo:.4f}-{hi:.4f}; target 0.995: "
                f"{_mark(t['ratio_median_of_pairs'] >= 0.995)})"
            )
    for key, val in results.items():
        if isinstance(val, dict) and "error" in val and len(val) == 1:
            lines.append(f"  {key}: ERROR {val['error']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--out", type=Path, required=True, help="directory for the JSON and summary")
    ap.add_argument("--sections", default="ect", help="e(nergy), c(pu), t(hroughput)")
    ap.add_argument("--gpu", type=int, default=0, help="CUDA device (default 0)")
    ap.add_argument("--seconds", type=float, default=30.0, help="window per load in energy")
    ap.add_argument("--cpu-seconds", type=float, default=15.0, help="measured run in cpu")
    ap.add_argument("--ab-pairs", type=int, default=6, help="A/B pairs per scenario")
    ap.add_argument("--ab-seconds", type=float, default=3.0, help="seconds per A/B run")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, text_path = args.out / "anchored_gpu.json", args.out / "anchored_gpu.txt"

    def write(results: dict[str, Any]) -> None:
        json_path.write_text(json.dumps(results, indent=2, default=float))

    try:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("PyTorch sees no CUDA device")
        library = NvmlLibrary().open()
        gpus, _notes = library.visible_gpus()
        if not gpus:
            raise RuntimeError("NVML sees no visible GPU")
    except Exception as err:  # no GPU here: say so, not a failure
        print(f"anchored_gpu bench skipped: {err}")
        write({"skipped": str(err)})
        return 0
    props_uuid = getattr(torch.cuda.get_device_properties(args.gpu), "uuid", None)
    uuid = f"GPU-{props_uuid}" if props_uuid else gpus[args.gpu].identity.uuid
    gpu = next((g for g in gpus if g.identity.uuid == uuid), gpus[args.gpu])
    versions = library.versions()
    from _gpu_load import Workload

    workload = Workload(torch, args.gpu)
    results: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d"),
            "gpu": gpu.identity.name,
            "uuid": uuid,
            "driver": versions.driver,
            "cuda_driver": versions.cuda_driver,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "load": workload.kind,
            "configs": {"reference": REFERENCE.__dict__, "anchored": ANCHORED.__dict__},
            "args": {k: str(v) for k, v in vars(args).items()},
        }
    }
    clock = SessionClock()
    steps: list[Step] = [
        ("e", "energy", lambda: section_energy(workload, clock, uuid, args.seconds)),
        ("c", "cpu", lambda: section_cpu(workload, clock, uuid, 10.0, args.cpu_seconds)),
        ("t", "throughput",
         lambda: section_throughput(workload, clock, uuid, args.ab_pairs, args.ab_seconds)),
    ]  # fmt: skip
    run_sections(steps, args.sections, results, write)
    library.close()
    text = summary(results)
    text_path.write_text(text + "\n")
    print(text)
    print(f"results: {json_path}, {text_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
