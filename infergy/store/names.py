"""Names the store keys runs by: run ids (new and checked) and source names.

A run id or source name is also a file name (``<out>/<run_id>/traces/<source>.csv``) and a
URL path segment, hence :func:`check_name`'s strict alphabet.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from infergy.errors import InputError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_name(kind: str, name: object, max_len: int = 128) -> str:
    """Return ``name`` if it is a safe run id or source name (and file name), else raise.

    Safe: 1 to ``max_len`` letters, digits, ``.``, ``_`` or ``-``, the first a letter or digit
    (never ``..``, a hidden file or an option). Raises ``InputError`` naming it ``kind``.
    """
    if not (isinstance(name, str) and len(name) <= max_len and _NAME.fullmatch(name)):
        msg = f"invalid {kind} {name!r}"
        hint = f"use 1-{max_len} letters, digits, '.', '_' or '-', starting with a letter or digit"
        raise InputError(msg, hint=hint)
    return name


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus 6 random hex digits."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
