"""The section loop of the GPU benchmarks (bench/nvml_meter.py, bench/anchored_gpu.py).

Each section is one letter of ``--sections``; a section that raises keeps what the others
measured, and the results are written after every section.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

Step = tuple[str, str, Callable[[], dict[str, Any]]]


def run_sections(
    steps: Sequence[Step],
    wanted: str,
    results: dict[str, Any],
    write: Callable[[dict[str, Any]], None],
) -> None:
    """Run the ``steps`` whose letter is in ``wanted`` into ``results``; ``meta.total_s`` last."""
    t_start = time.perf_counter()
    for letter, key, step in steps:
        if letter not in wanted:
            continue
        t0 = time.perf_counter()
        try:
            results[key] = step()
        except Exception as err:  # keep what the other sections measured
            results[key] = {"error": f"{type(err).__name__}: {err}"}
        print(f"[{letter}] {key} done in {time.perf_counter() - t0:.1f} s", flush=True)
        write(results)
    results["meta"]["total_s"] = time.perf_counter() - t_start
    write(results)
