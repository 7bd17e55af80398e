"""Where infergy writes, checked: writable, not full, and said so in words when it is not.

Used at ``infergy serve``'s start (an unusable state directory stops it with one line), by the
store's health (``/healthz`` measures it instead of assuming it), and to explain a failure
(a LoadGen process that died on a full disk says the disk is full).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from infergy.errors import StoreError

LOW_SPACE_BYTES = 16 << 20
"""Below this much free space (or a tenth of a smaller filesystem) the store is ``degraded``:
a result with its traces is a few MB."""
FULL_BYTES = 1 << 20
"""At most this much free space counts as full."""


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (what statvfs can look at)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem of ``path`` (None: unknown)."""
    try:
        st = os.statvfs(_existing(path))
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def low_space(path: Path) -> bool:
    """Whether the filesystem of ``path`` has less than ``LOW_SPACE_BYTES`` (or 10 %) free."""
    try:
        st = os.statvfs(_existing(path))
    except OSError:
        return False
    size = st.f_blocks * st.f_frsize
    return st.f_bavail * st.f_frsize < min(LOW_SPACE_BYTES, size // 10)


def read_only(path: Path) -> bool:
    """Whether the filesystem of ``path`` is mounted read-only."""
    try:
        return bool(os.statvfs(_existing(path)).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def disk_problem(path: Path) -> str | None:
    """Why writing under ``path`` fails or soon will, in words; None when the disk looks fine."""
    if read_only(path):
        return f"the filesystem holding {path} is read-only"
    free = free_bytes(path)
    if free is not None and free <= FULL_BYTES:
        return f"the disk holding {path} is full ({free:,} bytes free)"
    return None


def check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` if needed and prove a file can be written, synced and removed there.

    Raises:
        StoreError: it cannot (one line: which folder, what for, and why).
    """
    probe = folder / f".infergy-write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as f:
            f.write(b"infergy")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        with contextlib.suppress(OSError):
            probe.unlink()
        reason = disk_problem(folder) or err.strerror or str(err)
        msg = f"{what} {folder} is not writable: {reason}"
        hint = "make it writable, or point the config at another folder"
        raise StoreError(msg, hint=hint) from None
    probe.unlink()
