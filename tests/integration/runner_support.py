"""Helpers for the runner integration tests: a short real-LoadGen workload on the CPU."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from infergy.core.trace import Scenario
from infergy.runners import WorkloadConfig


def tiny_cfg(tmp_path: Path, scenario: Scenario, **kw: object) -> WorkloadConfig:
    """The built-in tiny ONNX model on one CPU thread (CI has 2 cores)."""
    base: dict[str, object] = {
        "backend": "onnxruntime", "scenario": scenario, "duration_s": 2.0,
        "intra_op_threads": 1, "cache_dir": tmp_path / "cache",
    }  # fmt: skip
    base.update(kw)
    return WorkloadConfig(**base)  # type: ignore[arg-type]


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with Path(f"/proc/{pid}/stat").open() as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def children_of_this_process() -> list[int]:
    """PIDs whose parent is this process (still running)."""
    me, out = os.getpid(), []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                out.append(int(d.name))
    return out


def runner_threads() -> list[str]:
    """Names of infergy threads still alive in this process."""
    return [t.name for t in threading.enumerate() if t.name.startswith("infergy-")]
