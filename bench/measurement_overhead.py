"""Per-window overhead of the Python API: what ``begin_window`` + ``end_window`` cost the caller.

A server that wraps every request in a window pays this on its own thread; the figures are
computed later, lazily, off that path. Measured in one process, on a running
``infergy.Measurement``:

  pair         one begin_window + end_window on one thread, names made beforehand: the
               median over --repeats runs of --windows pairs each (wall ns per pair, and the
               thread's CPU ns per pair, which other processes on a busy host do not inflate);
               and the per-pair p50/p99 of one run timed pair by pair (~50 ns of it timer);
  loop         the same loop calling two no-op methods instead: the loop's own share;
  threads      --threads threads doing pairs at once: wall time per pair seen by one thread,
               and all threads' pairs per second (the GIL serialises them: per pair of all
               threads together, ``aggregate``);
  nested       a pair inside an outer open window (a request inside a phase);
  figures      after the measurement: the first figures read (the traces' profiles are built
               once) and then per window, over every window -- the lazy cost, not on the path.

Usage (repository root):
  PYTHONPATH=. python bench/measurement_overhead.py --out DIR [--meter sim] [--windows 20000]
On a GPU host: --meter nvml (no simulated device follows the windows there, so no follow call).
Writes DIR/measurement_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import infergy


class _Noop:
    def begin_window(self, name: str) -> None:
        pass

    def end_window(self, name: str) -> None:
        pass


def _pairs(m: Any, names: list[str], cpu: list[float] | None = None) -> float:
    """Wall ns per begin+end pair over ``names`` (this thread's CPU ns appended to ``cpu``)."""
    begin, end = m.begin_window, m.end_window
    c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
    for n in names:
        begin(n)
        end(n)
    wall = (time.perf_counter_ns() - t0) / len(names)
    if cpu is not None:
        cpu.append((time.thread_time_ns() - c0) / len(names))
    return wall


def _each(m: Any, names: list[str]) -> list[int]:
    """Each pair timed on its own (ns)."""
    begin, end, clock = m.begin_window, m.end_window, time.perf_counter_ns
    out = []
    for n in names:
        t0 = clock()
        begin(n)
        end(n)
        out.append(clock() - t0)
    return out


def _threads(m: Any, names: list[str], k: int) -> float:
    """ns per pair per thread with ``k`` threads at once."""
    results: list[float] = []
    barrier = threading.Barrier(k)

    def work(i: int) -> None:
        mine = [f"{n}.t{i}" for n in names]
        barrier.wait()
        results.append(_pairs(m, mine))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statistics.median(results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--meter", action="append", default=None, help="default: automatic")
    p.add_argument("--windows", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=4)
    a = p.parse_args()
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "platform": platform.platform(),
                           "python": platform.python_version(), "windows": a.windows,
                           "repeats": a.repeats}  # fmt: skip
    with infergy.Measurement(a.meter or ()) as m:
        out["sources"], out["simulated"] = m.sources, sorted(m.simulated)
        names = [[f"r{r}.{i}" for i in range(a.windows)] for r in range(a.repeats)]
        _pairs(m, [f"warm{i}" for i in range(2000)])
        cpu_runs: list[float] = []
        pair_runs = [_pairs(m, names[r], cpu_runs) for r in range(a.repeats)]
        noop_runs = [_pairs(_Noop(), names[r]) for r in range(a.repeats)]
        each = sorted(_each(m, [f"e{i}" for i in range(a.windows)]))
        thread_runs = [_threads(m, [f"th{r}.{i}" for i in range(a.windows // a.threads)],
                                a.threads) for r in range(a.repeats)]  # fmt: skip
        m.begin_window("outer")
        nested_runs = [_pairs(m, [f"n{r}.{i}" for i in range(a.windows)]) for r in range(3)]
        m.end_window("outer")
    windows = m.windows
    t0 = time.perf_counter_ns()
    _ = windows[0].sources
    first_ns = time.perf_counter_ns() - t0
    sample = windows[1 : 1 + min(5000, len(windows) - 1)]
    t0 = time.perf_counter_ns()
    for w in sample:
        _ = w.sources
    per_window_ns = (time.perf_counter_ns() - t0) / len(sample)
    out.update(
        pair_ns_median=statistics.median(pair_runs), pair_ns_runs=pair_runs,
        pair_cpu_ns_median=statistics.median(cpu_runs), pair_cpu_ns_runs=cpu_runs,
        loop_ns_median=statistics.median(noop_runs),
        pair_each_ns={"p50": each[len(each) // 2], "p99": each[int(len(each) * 0.99)],
                      "max": each[-1]},
        threads=a.threads, threaded_pair_ns_median=statistics.median(thread_runs),
        threaded_aggregate_pair_ns_median=statistics.median(thread_runs) / a.threads,
        threaded_pair_ns_runs=thread_runs, nested_pair_ns_median=statistics.median(nested_runs),
        figures_first_read_ms=first_ns / 1e6, figures_per_window_us=per_window_ns / 1e3,
        problems=m.problems,
    )  # fmt: skip
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "measurement_overhead.json").write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"begin+end: {out['pair_ns_median'] / 1e3:.2f} µs per window, "
        f"{out['pair_cpu_ns_median'] / 1e3:.2f} µs of CPU (median of {a.repeats}; "
        f"the bare loop {out['loop_ns_median'] / 1e3:.2f} µs); one by one p50 "
        f"{out['pair_each_ns']['p50'] / 1e3:.2f} / p99 {out['pair_each_ns']['p99'] / 1e3:.2f} µs; "
        f"{a.threads} threads {out['threaded_pair_ns_median'] / 1e3:.2f} µs per thread, "
        f"{out['threaded_aggregate_pair_ns_median'] / 1e3:.2f} µs aggregate; nested "
        f"{out['nested_pair_ns_median'] / 1e3:.2f} µs; figures later: first read "
        f"{out['figures_first_read_ms']:.1f} ms, then {out['figures_per_window_us']:.0f} µs each"
    )


if __name__ == "__main__":
    main()
