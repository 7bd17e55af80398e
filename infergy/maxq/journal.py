"""The restore journal: every touched GPU's original settings, on disk before the first change.

A sweep calls :func:`start_changes` before it changes anything: it checks every GPU's
permission (nothing changed yet if that fails), refuses to start while a journal is left (its
settings, not the current ones, are the originals), and writes ``maxq-restore.json`` into the
state dir durably (temporary file, fsync, rename, fsync of the directory). :func:`restore`
writes the originals back, reads them back to verify, and removes the journal only after every
GPU verified; it is idempotent. A journal left by a crashed or killed process is found and
restored at the next start by :func:`restore_leftover`, which refuses while its owner (pid,
process start time, boot id) is still running.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infergy.errors import InfergyError
from infergy.maxq.control import GpuControl, GpuSettings, apply_settings
from infergy.maxq.errors import JournalError, RestoreError

JOURNAL_FILE = "maxq-restore.json"
SCHEMA_VERSION = 1
_KIND = "infergy-maxq-restore-journal"
_MANUAL_HINT = (
    "restore by hand: nvidia-smi -i <gpu> -pl <watts>, nvidia-smi -rgc, nvidia-smi -rmc; "
    "then delete the journal"
)


@dataclass(frozen=True)
class JournalOwner:
    """The process that wrote a journal, precisely enough to tell it is gone.

    Attributes:
        pid: its process id.
        start_ticks: its start time (``/proc/<pid>/stat`` field 22), or None where unknown;
            a reused pid has another start time.
        boot_id: ``/proc/sys/kernel/random/boot_id`` then; after a reboot the owner is gone.
    """

    pid: int
    start_ticks: int | None
    boot_id: str | None


@dataclass(frozen=True)
class JournalEntry:
    """One GPU's original settings.

    Attributes:
        uuid: the GPU's UUID (the key to find its control again).
        label: the GPU for messages.
        settings: what to restore.
    """

    uuid: str
    label: str
    settings: GpuSettings


@dataclass(frozen=True)
class Journal:
    """A restore journal as written or read.

    Attributes:
        path: the journal file.
        sweep_id: the sweep that wrote it.
        created_unix_ns: when, ns since the Unix epoch.
        owner: the process that wrote it.
        entries: one per GPU the sweep touches.
    """

    path: Path
    sweep_id: str
    created_unix_ns: int
    owner: JournalOwner
    entries: tuple[JournalEntry, ...]


@dataclass(frozen=True)
class RestoreReport:
    """What a verified restore did.

    Attributes:
        journal: the journal restored.
        restored: the labels of the GPUs restored and verified.
        removed: True if this call removed the journal file (False when it was already gone).
    """

    journal: Journal
    restored: tuple[str, ...]
    removed: bool


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def _start_ticks(stat_text: str | None) -> int | None:
    """Field 22 of a ``/proc/<pid>/stat`` text (after the parenthesised command name)."""
    if not stat_text or ")" not in stat_text:
        return None
    fields = stat_text.rsplit(")", 1)[1].split()
    return int(fields[19]) if len(fields) > 19 else None  # fields[0] is field 3


def current_owner(proc: Path = Path("/proc")) -> JournalOwner:
    """This process as a journal owner."""
    boot = _read_text(proc / "sys/kernel/random/boot_id")
    return JournalOwner(
        pid=os.getpid(),
        start_ticks=_start_ticks(_read_text(proc / "self/stat")),
        boot_id=boot.strip() if boot else None,
    )


def owner_alive(owner: JournalOwner, proc: Path = Path("/proc")) -> bool:
    """Whether the journal's owner still runs (same boot, same pid, same start time)."""
    boot = _read_text(proc / "sys/kernel/random/boot_id")
    if owner.boot_id and boot and boot.strip() != owner.boot_id:
        return False  # rebooted since: the owner is gone (and the driver reset the settings)
    stat = _read_text(proc / str(owner.pid) / "stat")
    if stat is None:
        return False
    ticks = _start_ticks(stat)
    return owner.start_ticks is None or ticks is None or ticks == owner.start_ticks


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_json(lock: tuple[int, int] | None) -> list[int] | None:
    return None if lock is None else [lock[0], lock[1]]


def _encode(journal: Journal) -> bytes:
    body = {
        "schema_version": SCHEMA_VERSION,
        "kind": _KIND,
        "sweep_id": journal.sweep_id,
        "created_unix_ns": journal.created_unix_ns,
        "owner": {
            "pid": journal.owner.pid,
            "start_ticks": journal.owner.start_ticks,
            "boot_id": journal.owner.boot_id,
        },
        "gpus": [
            {
                "uuid": e.uuid,
                "label": e.label,
                "simulated": e.settings.simulated,
                "power_limit_w": e.settings.power_limit_w,
                "sm_lock_mhz": _lock_json(e.settings.sm_lock_mhz),
                "mem_lock_mhz": _lock_json(e.settings.mem_lock_mhz),
            }
            for e in journal.entries
        ],
    }
    return (json.dumps(body, indent=1) + "\n").encode()


def write_journal(
    state_dir: Path,
    controls: Sequence[GpuControl],
    *,
    sweep_id: str,
    now_ns: Callable[[], int] = time.time_ns,
    owner: JournalOwner | None = None,
) -> Journal:
    """Read every GPU's settings and write them durably as the journal (refused if one exists).

    Raises:
        JournalError: a journal is already there, or the state dir cannot be written.
    """
    left = find_journal(state_dir)
    if left is not None:
        msg = (
            f"a restore journal from sweep {left.sweep_id} (pid {left.owner.pid}) is in "
            f"{state_dir}: its settings are the originals, so restore it before a new sweep"
        )
        raise JournalError(msg, hint="run `infergy maxq restore`")
    entries = tuple(JournalEntry(c.uuid, c.label, c.settings()) for c in controls)
    path = state_dir / JOURNAL_FILE
    journal = Journal(path, sweep_id, now_ns(), owner or current_owner(), entries)
    tmp = state_dir / f".{JOURNAL_FILE}.{os.getpid()}.tmp"
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        for stale in state_dir.glob(f".{JOURNAL_FILE}.*.tmp"):
            stale.unlink(missing_ok=True)  # a crash mid-write left it; the rename never ran
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, _encode(journal))
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        _fsync_dir(state_dir)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        msg = f"cannot write the restore journal in {state_dir}: {err.strerror or err}"
        raise JournalError(msg, hint="check [maxq] state_dir and its permissions") from err
    return journal


def _lock(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    lo, hi = value
    return int(lo), int(hi)


def read_journal(path: Path) -> Journal:
    """Parse a journal file.

    Raises:
        JournalError: unreadable, not JSON, or not a journal of this schema.
    """
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        if body.get("kind") != _KIND or body.get("schema_version") != SCHEMA_VERSION:
            msg = "not an infergy restore journal of schema 1"
            raise ValueError(msg)
        owner = body["owner"]
        entries = tuple(
            JournalEntry(
                uuid=str(g["uuid"]),
                label=str(g["label"]),
                settings=GpuSettings(
                    power_limit_w=float(g["power_limit_w"]),
                    sm_lock_mhz=_lock(g["sm_lock_mhz"]),
                    mem_lock_mhz=_lock(g["mem_lock_mhz"]),
                    simulated=bool(g["simulated"]),
                ),
            )
            for g in body["gpus"]
        )
        return Journal(
            path=path,
            sweep_id=str(body["sweep_id"]),
            created_unix_ns=int(body["created_unix_ns"]),
            owner=JournalOwner(int(owner["pid"]), owner["start_ticks"], owner["boot_id"]),
            entries=entries,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        msg = f"cannot read the restore journal {path}: {err}"
        raise JournalError(msg, hint=_MANUAL_HINT) from err


def find_journal(state_dir: Path) -> Journal | None:
    """The journal in ``state_dir``, or None (temporary files of an unfinished write ignored)."""
    path = state_dir / JOURNAL_FILE
    return read_journal(path) if path.exists() else None


def start_changes(state_dir: Path, controls: Sequence[GpuControl], *, sweep_id: str) -> Journal:
    """Before the first change: check every GPU's permission, then write the journal.

    Raises:
        ControlPermissionError: a GPU may not be changed (nothing was changed, nothing written).
        JournalError: a journal is left from another sweep, or it cannot be written.
    """
    for control in controls:
        control.check_permission()
    return write_journal(state_dir, controls, sweep_id=sweep_id)


def restore(journal: Journal, controls: Sequence[GpuControl]) -> RestoreReport:
    """Write every GPU's original settings back, verify by reading them, then drop the journal.

    Every GPU is attempted even after one fails; the journal stays until all verified.

    Raises:
        RestoreError: naming each GPU that could not be restored or read back, and how.
    """
    by_uuid = {c.uuid: c for c in controls}
    failures: list[str] = []
    restored: list[str] = []
    for entry in journal.entries:
        control = by_uuid.get(entry.uuid)
        if control is None:
            failures.append(f"{entry.label} ({entry.uuid}) is not present")
            continue
        try:
            apply_settings(control, entry.settings)
            got = control.settings()
        except InfergyError as err:
            failures.append(f"{entry.label}: {err}")
            continue
        differences = got.differences(entry.settings)
        if differences:
            failures.append(f"{entry.label} reads back {'; '.join(differences)}")
        else:
            restored.append(entry.label)
    if failures:
        msg = f"restore of sweep {journal.sweep_id} not verified: " + " | ".join(failures)
        raise RestoreError(msg, hint=f"the journal {journal.path} is kept; " + _MANUAL_HINT)
    removed = journal.path.exists()
    journal.path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        _fsync_dir(journal.path.parent)
    return RestoreReport(journal, tuple(restored), removed)


def restore_leftover(
    state_dir: Path, controls: Sequence[GpuControl], *, proc: Path = Path("/proc")
) -> RestoreReport | None:
    """At start: restore a journal a crashed process left (None when there is none).

    Raises:
        JournalError: the journal's owner still runs (a sweep in progress elsewhere).
        RestoreError: as :func:`restore`.
    """
    journal = find_journal(state_dir)
    if journal is None:
        return None
    ours = journal.owner == current_owner(proc)
    if not ours and owner_alive(journal.owner, proc):
        msg = (
            f"sweep {journal.sweep_id} (pid {journal.owner.pid}) is still running and owns "
            f"the restore journal {journal.path}"
        )
        raise JournalError(msg, hint="wait for it or stop it; it restores the GPUs itself")
    return restore(journal, controls)
