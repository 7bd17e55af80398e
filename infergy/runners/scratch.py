"""What a workload leaves in a run's folder once it is closed: only what is worth keeping.

While it runs, a :class:`~infergy.runners.workload.Workload` keeps its scratch under
``<run>/runner/``: the raw query records (``queries-{warmup,run}.bin``, 32 bytes a query, read
for progress and for an aborted run's partial queries), the status board, the warm-up's
calibration LoadGen logs, and the child process's output (``child.log``). Once the session
has its result and files, :func:`remove_scratch` deletes all of it except a ``child.log``
with something in it (an unexpected error's traceback, LoadGen's warnings), and the empty
files LoadGen writes (``mlperf_log_trace.json`` without tracing).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

STATE_DIR = "runner"
"""The workload's scratch folder under a run's folder."""
LOADGEN_DIR = "loadgen"
"""Where the measured run's LoadGen logs go under a run's folder."""
CHILD_LOG = "child.log"
_SCRATCH_FILES = ("queries-warmup.bin", "queries-run.bin", "status.bin", "tokens-warmup.bin",
                  "phases-warmup.bin")  # fmt: skip
_RUN_LOGS = ("tokens-run.bin", "phases-run.bin")
"""A generative run's token and phase logs: kept with its result, scratch without one."""
_SCRATCH_DIRS = ("loadgen-warmup",)


def remove_scratch(run_dir: Path, *, keep_dir: bool = True) -> None:
    """Delete the workload's scratch and empty files under ``run_dir`` (best effort).

    Args:
        run_dir: the run's folder.
        keep_dir: ``False`` when nothing of the run was kept (it failed before a result):
            the folder itself goes too if nothing else is left in it.
    """
    state = run_dir / STATE_DIR
    for name in _SCRATCH_FILES + (() if keep_dir else _RUN_LOGS):
        _unlink(state / name)
    for name in _SCRATCH_DIRS:
        shutil.rmtree(state / name, ignore_errors=True)
    _unlink_if_empty(state / CHILD_LOG)
    loadgen = run_dir / LOADGEN_DIR
    if loadgen.is_dir():
        for path in loadgen.iterdir():
            _unlink_if_empty(path)
    for folder in (state, loadgen, *([] if keep_dir else [run_dir])):
        with contextlib.suppress(OSError):  # not there, or not empty: kept
            folder.rmdir()


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _unlink_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_file() and path.stat().st_size == 0:
            path.unlink()
