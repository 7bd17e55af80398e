"""The MaxQ sweep table of the results store: one JSON record per sweep (docs/maxq.md).

A mixin of :class:`infergy.store.Store`: the same connection, lock and error translation.
A sweep's points are ordinary runs (``<sweep_id>-p03``...); the record ties them together
with the plan, the search, the Pareto fronts, the recommendation and the restore. It is
written after every point, so a sweep killed mid-way keeps what it measured; a record left
``running`` by a killed process becomes ``aborted`` at the next start
(:meth:`SweepTable.mark_sweeps_interrupted`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from infergy.errors import InputError, StoreError
from infergy.store.names import check_name

SWEEP_RUNNING = "running"
"""The status of a sweep record still being written."""
_HINT = "list the stored sweeps with `infergy maxq list`"


class SweepTable:
    """Save, read and list sweep records; every call is one transaction."""

    _conn: sqlite3.Connection
    path: Path

    def _op(self, action: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def save_sweep(self, record: Mapping[str, Any]) -> None:
        """Insert or replace a sweep's record (``sweep_id``, ``status``, JSON without NaN)."""
        sweep_id = check_name("sweep id", record.get("sweep_id"))
        status = record.get("status")
        if not isinstance(status, str):
            msg = f"sweep {sweep_id}: the record has no status string (got {status!r})"
            raise StoreError(msg)
        try:
            text = json.dumps(record, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as err:
            msg = f"sweep {sweep_id}: the record is not storable as JSON: {err}"
            raise StoreError(msg, hint="absent figures are None, never NaN") from None
        created = record.get("created_unix_ns")
        created_ns = created if isinstance(created, int) else time.time_ns()
        with self._op(f"save sweep {sweep_id}"), self._transaction():
            self._conn.execute(
                "INSERT INTO sweeps VALUES (?,?,?,?) ON CONFLICT (sweep_id) DO UPDATE SET"
                " status = excluded.status, record_json = excluded.record_json",
                (sweep_id, created_ns, status, text),
            )

    def find_sweep(self, sweep_id: str) -> dict[str, Any] | None:
        """A sweep's record, or None."""
        check_name("sweep id", sweep_id)
        with self._op(f"read sweep {sweep_id}"):
            row = self._conn.execute(
                "SELECT record_json FROM sweeps WHERE sweep_id = ?", (sweep_id,)
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def get_sweep(self, sweep_id: str) -> dict[str, Any]:
        """A sweep's record (an id prefix is enough when it is unique)."""
        record = self.find_sweep(self.resolve_sweep(sweep_id))
        assert record is not None  # resolve_sweep found it
        return record

    def resolve_sweep(self, prefix: str) -> str:
        """The sweep id equal to ``prefix``, else the only one starting with it."""
        check_name("sweep id prefix", prefix)
        sql = "SELECT sweep_id FROM sweeps WHERE substr(sweep_id, 1, ?) = ? ORDER BY sweep_id"
        with self._op(f"look up sweep {prefix}"):
            ids = [str(r[0]) for r in self._conn.execute(sql + " LIMIT 6", (len(prefix), prefix))]
        if prefix in ids or len(ids) == 1:
            return prefix if prefix in ids else ids[0]
        if not ids:
            msg = f"store {self.path}: no sweep id starts with {prefix!r}"
            raise InputError(msg, hint=_HINT)
        msg = f"store {self.path}: sweep id prefix {prefix!r} is ambiguous ({', '.join(ids[:5])})"
        raise InputError(msg, hint="give more characters of the sweep id")

    def list_sweeps(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest sweeps' records, newest first."""
        if limit < 1:
            msg = f"the number of sweeps to list must be at least 1, got {limit}"
            raise StoreError(msg)
        sql = "SELECT record_json FROM sweeps ORDER BY created_unix_ns DESC, rowid DESC LIMIT ?"
        with self._op("list sweeps"):
            rows = self._conn.execute(sql, (limit,)).fetchall()
        return [dict(json.loads(r[0])) for r in rows]

    def mark_sweeps_interrupted(self, reason: str) -> list[str]:
        """Mark every ``running`` sweep ``aborted`` (``reason`` added to its problems)."""
        with self._op("mark interrupted sweeps"), self._transaction():
            rows = self._conn.execute(
                "SELECT sweep_id, record_json FROM sweeps WHERE status = ?", (SWEEP_RUNNING,)
            ).fetchall()
            for sweep_id, text in rows:
                record = json.loads(text)
                record["status"] = "aborted"
                record["problems"] = [*record.get("problems", []), reason]
                self._conn.execute(
                    "UPDATE sweeps SET status = ?, record_json = ? WHERE sweep_id = ?",
                    ("aborted", json.dumps(record, ensure_ascii=False), sweep_id),
                )
        return [r[0] for r in rows]
