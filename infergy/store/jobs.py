"""The job journal of the results store: every job ``infergy serve`` accepted, and its state.

A mixin of :class:`infergy.store.Store` (the same connection, lock and error translation). A
job is written here before the service answers ``202 Accepted``, and its row follows the job
(``queued`` -> ``running`` -> a final state), so after a crash the next start finds every job
it had accepted: queued ones run, running ones are recovered as ``aborted``. The result itself
lives in ``runs``; this table holds what a job was asked to do and what became of it.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager

KEEP_FINISHED = 10_000
"""Finished jobs kept in the journal (the oldest are pruned; their results stay in ``runs``)."""
UNFINISHED = ("queued", "running")


@dataclasses.dataclass(frozen=True)
class JobRow:
    """One journalled job (times: Unix ns).

    ``clock_offset_ns`` is the service's session clock (wall minus monotonic) while the job
    ran, so its runner's monotonic records can be placed after a crash.
    """

    run_id: str
    submitted_unix_ns: int
    state: str
    spec_json: str
    started_unix_ns: int | None = None
    finished_unix_ns: int | None = None
    error: str | None = None
    clock_offset_ns: int | None = None


class JobTable:
    """Write and read the job journal; every call is one transaction."""

    _conn: sqlite3.Connection

    def _op(self, action: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def job_put(self, rows: Sequence[JobRow]) -> None:
        """Insert or update jobs (by run id) in one transaction; prune old finished ones."""
        sql = (
            "INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (run_id) DO UPDATE SET"
            " state = excluded.state, started_unix_ns = excluded.started_unix_ns,"
            " finished_unix_ns = excluded.finished_unix_ns, error = excluded.error,"
            " clock_offset_ns = coalesce(excluded.clock_offset_ns, jobs.clock_offset_ns)"
        )
        prune = (
            "DELETE FROM jobs WHERE state NOT IN (?, ?) AND run_id NOT IN (SELECT run_id FROM"
            " jobs WHERE state NOT IN (?, ?) ORDER BY submitted_unix_ns DESC LIMIT ?)"
        )
        with self._op("record jobs"), self._transaction():
            self._conn.executemany(sql, [dataclasses.astuple(r) for r in rows])
            if any(r.state not in UNFINISHED for r in rows):
                self._conn.execute(prune, (*UNFINISHED, *UNFINISHED, KEEP_FINISHED))

    def job_list(self, states: Sequence[str] = UNFINISHED) -> list[JobRow]:
        """Journalled jobs in one of ``states``, oldest submission first."""
        marks = ",".join("?" * len(states))
        sql = f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY submitted_unix_ns, rowid"
        with self._op("read the job journal"):
            rows = self._conn.execute(sql, tuple(states)).fetchall()
        return [JobRow(*row) for row in rows]

    def job_get(self, run_id: str) -> JobRow | None:
        """One journalled job, or ``None``."""
        with self._op(f"read job {run_id}"):
            row = self._conn.execute("SELECT * FROM jobs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else JobRow(*row)
