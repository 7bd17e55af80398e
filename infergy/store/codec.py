"""The payload codec of the results store (:mod:`infergy.store`): numeric columns to bytes.

Arrays are stored as zlib of their little-endian bytes, byte-shuffled (byte k of every value
together), timestamps delta-encoded: regular sampling compresses to almost nothing::

    payload = pack([delta(trace.t_ns), trace.values])
    t_delta, values = unpack(CODEC, payload, len(trace), "if")
    t_ns = np.cumsum(t_delta)

Decoding failures raise ``ValueError`` or ``zlib.error``; the store turns them into
``StoreError``.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

CODEC = "zlib-shuffle-delta-1"
"""Payload encoding of traces and query logs (``pack``)."""


def delta(a: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """First value, then differences (wrapping int64 arithmetic, which ``cumsum`` undoes)."""
    return np.diff(a, prepend=np.int64(0))


def pack(columns: list[npt.NDArray[Any]]) -> bytes:
    """Compress 8-byte columns: little-endian, byte-shuffled, concatenated, zlib level 6."""
    planes = [np.ascontiguousarray(c, dtype=c.dtype.newbyteorder("<")) for c in columns]
    return zlib.compress(b"".join(p.view(np.uint8).reshape(-1, 8).T.tobytes() for p in planes))


def unpack(codec: str, payload: bytes, n: int, kinds: str) -> list[npt.NDArray[Any]]:
    """Inverse of ``pack``: ``n`` values per column, one column per ``kinds`` letter (i/f)."""
    if codec != CODEC:
        msg = f"unknown codec {codec!r} (this infergy reads {CODEC!r})"
        raise ValueError(msg)
    size = n * 8 * len(kinds)
    raw = zlib.decompressobj().decompress(payload, size + 1)  # bounded: a bad n cannot balloon
    if len(raw) != size:
        msg = f"payload holds {len(raw)} bytes, expected {size}"
        raise ValueError(msg)
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(len(kinds), 8, n)
    return [
        np.ascontiguousarray(plane.T).view(f"<{kind}8").ravel().astype(f"={kind}8")
        for plane, kind in zip(planes, kinds, strict=True)
    ]
