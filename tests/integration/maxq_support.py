"""Shared pieces of the MaxQ sweep tests: settings for short points on a simulated GPU."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from infergy.config.settings import Settings
from infergy.daemon.maxq_session import MaxqSweep, QuietSweepObserver
from infergy.daemon.maxq_spec import MaxqSpec
from infergy.maxq.control import GpuControl
from infergy.maxq.journal import JOURNAL_FILE
from infergy.maxq.sim_control import SimulatedGpuControl
from infergy.meters.gpu_sim import SimulatedGpu
from infergy.store.db import Store

ROOT = Path(__file__).resolve().parents[2]
FAST = {"settle_s": 0.0, "warmup_s": 0.3, "idle_s": 0.5, "point_duration_s": 1.0}


def settings(tmp: Path, part: str = "h200", **maxq: Any) -> Settings:
    """One simulated GPU of ``part``, short points, everything under ``tmp``."""
    return Settings.model_validate(
        {
            "output": {"dir": str(tmp / "out")},
            "store": {"path": str(tmp / "store.db")},
            "meters": {
                "simulated_gpus": 1,
                "simulated_part": part,
                "rapl": False,
                "emulator": {"noise": 0.0},
            },
            "maxq": {"state_dir": str(tmp / "state"), **FAST, **maxq},
            "session": {"tail_s": 1.2, "plots": False},
        }
    )


def toml(tmp: Path, part: str = "h200", **maxq: Any) -> Path:
    """The same settings as a config file, for the command line in a subprocess."""
    body = {**FAST, **maxq}
    lines = [
        "[store]", f'path = "{tmp / "store.db"}"', "[output]", f'dir = "{tmp / "out"}"',
        "[meters]", "simulated_gpus = 1", f'simulated_part = "{part}"', "rapl = false",
        "[maxq]", f'state_dir = "{tmp / "state"}"', *(f"{k} = {v}" for k, v in body.items()),
        "[session]", "tail_s = 1.2", "plots = true",
    ]  # fmt: skip
    path = tmp / "infergy.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def spec(**fields: Any) -> MaxqSpec:
    """A sim-backend sweep measuring the GPU's counter (no emulated analyzer unless asked)."""
    return MaxqSpec.model_validate({"backend": "sim", "meter": ["nvml"]} | fields)


class Recorder(QuietSweepObserver):
    """Notes and point events, and a hook called when a point starts."""

    def __init__(self, on_start: Callable[[int, str], None] | None = None) -> None:
        self.notes: list[str] = []
        self.started: list[tuple[int, str, str]] = []
        self.finished: list[dict[str, Any]] = []
        self.on_start = on_start
        self.sweep: MaxqSweep | None = None
        """The sweep observed (set by :func:`run`), for hooks that inject faults."""

    def note(self, text: str) -> None:
        self.notes.append(text)

    def point_started(self, index: int, role: str, what: str) -> None:
        self.started.append((index, role, what))
        if self.on_start is not None:
            self.on_start(index, role)

    def point_finished(self, entry: Any) -> None:
        self.finished.append(dict(entry))


def run(
    tmp: Path,
    sweep_spec: MaxqSpec,
    *,
    part: str = "h200",
    controls: Callable[[Sequence[object]], list[GpuControl | None]] | None = None,
    observer: Recorder | None = None,
    sweep_id: str = "mq-test",
    resume: dict[str, Any] | None = None,
    **maxq: Any,
) -> tuple[MaxqSweep, dict[str, Any] | None]:
    """Run a sweep in-process on the real session code; the sweep and its stored record."""
    s = settings(tmp, part, **maxq)
    kw: dict[str, Any] = {} if controls is None else {"controls": controls}
    observer = observer or Recorder()
    with Store.open(tmp / "store.db") as store:
        sweep = MaxqSweep(
            sweep_id, sweep_spec, s, store=store, observer=observer, resume=resume, **kw
        )
        observer.sweep = sweep
        asyncio.run(sweep.run())
        return sweep, store.find_sweep(sweep.sweep_id)


def board_controls(**kw: Any) -> Callable[[Sequence[object]], list[GpuControl | None]]:
    """A control factory over the meter set's boards that refuses or fails as told."""
    made: list[SimulatedGpuControl] = []

    def factory(devices: Sequence[object]) -> list[GpuControl | None]:
        now: list[GpuControl | None] = []
        for device in devices:
            assert isinstance(device, SimulatedGpu) and device.board is not None
            control = SimulatedGpuControl.for_board(device.board, **kw)
            made.append(control)
            now.append(control)
        return now

    factory.made = made  # type: ignore[attr-defined]
    return factory


def board_settings(tmp: Path, uuid: str = "GPU-simulated-h200-0000") -> dict[str, Any] | None:
    """What the simulated board's settings file says (it outlives the process, like a GPU)."""
    path = tmp / "state" / "simulated-gpus" / f"{uuid}.json"
    return json.loads(path.read_text()) if path.exists() else None


def journal_exists(tmp: Path) -> bool:
    """Whether a restore journal is on disk."""
    return (tmp / "state" / JOURNAL_FILE).exists()


def cli(*args: str) -> list[str]:
    """``python -m infergy ARGS`` with this worktree's code."""
    return [sys.executable, "-m", "infergy", *args]


def cli_env() -> dict[str, str]:
    """The environment of a subprocess running this worktree's code."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
