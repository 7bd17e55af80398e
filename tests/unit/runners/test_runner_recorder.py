from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from infergy.runners.recorder import (
    CHUNK_ROWS,
    RECORD_BYTES,
    QueryRecorder,
    StatusBoard,
    read_records,
)


def test_records_across_chunks_and_counters(tmp_path: Path) -> None:
    board = StatusBoard(tmp_path / "status.bin")
    rec = QueryRecorder(board, tmp_path / "q.bin")
    n = CHUNK_ROWS + 10
    for i in range(n):
        rec.issued(2)
        rec.completed(i, i + 5, 2, i % 3)
    rec.issued(3)
    rec.completed_many([100, 101, 102], 200, 1)
    rec.close()
    got = read_records(tmp_path / "q.bin")
    assert got.shape == (n + 3, 4)
    assert np.array_equal(got[:, 0][:n], np.arange(n))
    assert np.array_equal(got, rec.records())
    assert board.read() == (0, n + 3, 2 * n + 3)
    # the parent maps the same file and sees the same counters
    assert StatusBoard(tmp_path / "status.bin").read() == (0, n + 3, 2 * n + 3)


def test_torn_last_record_is_ignored(tmp_path: Path) -> None:
    p = tmp_path / "q.bin"
    rows = np.arange(8, dtype=np.int64).reshape(2, 4)
    p.write_bytes(rows.tobytes() + b"\x01\x02\x03")
    assert np.array_equal(read_records(p), rows)
    assert read_records(tmp_path / "absent.bin").shape == (0, 4)
    assert RECORD_BYTES == 32


def test_background_flush_makes_records_visible_before_close(tmp_path: Path) -> None:
    rec = QueryRecorder(StatusBoard(), tmp_path / "q.bin")
    rec.completed(1, 2, 1, 0)
    deadline = threading.Event()
    for _ in range(100):
        if len(read_records(tmp_path / "q.bin")) == 1:
            break
        deadline.wait(0.01)
    assert len(read_records(tmp_path / "q.bin")) == 1
    rec.close()
    rec.close()  # idempotent


def test_concurrent_writers_lose_nothing() -> None:
    board = StatusBoard()
    rec = QueryRecorder(board)

    def write(k: int) -> None:
        for i in range(5000):
            rec.issued(1)
            rec.completed(i, i + 1, 1, k)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    r = rec.records()
    assert len(r) == 20000 and board.read() == (0, 20000, 20000)
    assert sorted(np.bincount(r[:, 3]).tolist()) == [5000] * 4
