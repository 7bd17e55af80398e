"""Which GPU controls a sweep (or a restore) gets, and the restore of a journal left behind.

A sweep changes the GPUs it measures: for each metered GPU, :func:`controls_for` gives the
:class:`~infergy.maxq.control.GpuControl` that changes it: NVML's for a real GPU, the
simulated board's for a modelled simulated GPU (``[meters] simulated_part``), none for a
generic simulated GPU (it has no settings).

A journal left by a killed process names its GPUs by UUID; :func:`controls_for_journal` finds
them again (simulated boards from their UUID and the state dir, where their settings persist;
real GPUs through NVML) and :func:`restore_left_journal` restores them, at the start of
``infergy serve`` and ``infergy maxq`` and in ``infergy maxq restore``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from infergy.daemon.meters import SIMULATED_BOARDS_DIR
from infergy.errors import GpuError
from infergy.maxq.control import GpuControl
from infergy.maxq.journal import (
    Journal,
    JournalOwner,
    RestoreReport,
    find_journal,
    owner_alive,
    restore_leftover,
)
from infergy.maxq.nvml_control import NvmlGpuControl
from infergy.maxq.sim_control import SimulatedGpuControl
from infergy.meters.gpu_sim import SimulatedGpu
from infergy.meters.nvml_device import NvmlGpu, NvmlLibrary
from infergy.meters.sim_board import SimulatedBoard, parse_board_uuid


def controls_for(devices: Sequence[object]) -> list[GpuControl | None]:
    """The control of each metered GPU device, in order (None: it cannot be changed)."""
    out: list[GpuControl | None] = []
    for device in devices:
        if isinstance(device, NvmlGpu):
            out.append(NvmlGpuControl.for_gpu(device))
        elif isinstance(device, SimulatedGpu) and device.board is not None:
            out.append(SimulatedGpuControl.for_board(device.board))
        else:
            out.append(None)
    return out


@contextlib.contextmanager
def controls_for_journal(
    journal: Journal, state_dir: Path, boards: Sequence[SimulatedBoard] = ()
) -> Iterator[list[GpuControl]]:
    """Controls for the journal's GPUs that can be found (NVML is opened only if needed).

    Simulated boards open in this process (``boards``) are used as they are; others are made
    from their UUID over the state dir, where their settings persist.
    """
    known = {b.uuid: b for b in boards}
    controls: list[GpuControl] = []
    real: list[str] = []
    for entry in journal.entries:
        board = known.get(entry.uuid)
        parsed = parse_board_uuid(entry.uuid)
        if board is None and parsed is not None:
            part, index = parsed
            board = SimulatedBoard(part, index, state_dir=state_dir / SIMULATED_BOARDS_DIR)
        if board is not None:
            controls.append(SimulatedGpuControl.for_board(board))
        else:
            real.append(entry.uuid)
    if not real:
        yield controls
        return
    library: NvmlLibrary | None = None
    try:
        with contextlib.suppress(GpuError):  # no NVML: restore reports those GPUs missing
            library = NvmlLibrary().open()
            controls += [
                NvmlGpuControl.for_gpu(gpu)
                for gpu in library.all_gpus()
                if gpu.identity.uuid in real
            ]
        yield controls
    finally:
        if library is not None:
            library.close()


def restore_left_journal(
    state_dir: Path, boards: Sequence[SimulatedBoard] = ()
) -> RestoreReport | None:
    """Restore a journal a crashed or killed sweep left in ``state_dir`` (None: there is none).

    Raises:
        JournalError: the journal's owner still runs, or the journal cannot be read.
        RestoreError: a GPU could not be restored and verified (the journal is kept).
    """
    journal = find_journal(state_dir)
    if journal is None:
        return None
    with controls_for_journal(journal, state_dir, boards) as controls:
        return restore_leftover(state_dir, controls)


def abort_dead_sweeps(store: Any, reason: str) -> list[str]:
    """Mark ``aborted`` every ``running`` sweep record whose process is gone (killed, crashed).

    A sweep still running in another process (its owner alive) is left as it is.
    """
    gone = []
    for record in store.list_sweeps(1000):
        if record.get("status") != "running":
            continue
        owner = record.get("owner") or {}
        try:
            who = JournalOwner(int(owner["pid"]), owner.get("start_ticks"), owner.get("boot_id"))
        except (KeyError, TypeError, ValueError):
            who = None
        if who is not None and owner_alive(who):
            continue
        record["status"] = "aborted"
        record["problems"] = [*record.get("problems", []), reason]
        store.save_sweep(record)
        gone.append(str(record["sweep_id"]))
    return gone


def describe_restore(report: RestoreReport) -> str:
    """One line: what a restore did."""
    gpus = ", ".join(report.restored) or "no GPU"
    return f"restored the settings sweep {report.journal.sweep_id} left changed: {gpus}"


__all__ = [
    "abort_dead_sweeps",
    "controls_for",
    "controls_for_journal",
    "describe_restore",
    "restore_left_journal",
]
