"""The SQLite results store: every run's result JSON with its power traces and query log.

Each run is written in one transaction (WAL, ``synchronous=FULL``), so a crash mid-write
leaves no partial run. The schema is versioned by ``PRAGMA user_version`` and migrated
forward on open, one transaction per step::

    with Store.open(settings.store.path_or_default(os.environ)) as store:
        store.save_run(result, traces, queries)
        latest = store.list_runs(limit=1)[0]

Arrays are stored compressed, timestamps delta-encoded. Every ``sqlite3.Error`` leaves this
module as a one-line ``StoreError`` with a hint. Beside it: the tables and migrations
(:mod:`infergy.store.schema`), the array codec (:mod:`infergy.store.codec`), the run listing
(:mod:`infergy.store.summary`), the MQTT outbox table (:mod:`infergy.store.outbox`), the job
journal (:mod:`infergy.store.jobs`) and the MaxQ sweep records (:mod:`infergy.store.sweeps`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np

from infergy.core.trace import QueryLog, Semantics, Trace
from infergy.errors import DamagedRunError, InputError, StoreError, TraceError
from infergy.store.codec import CODEC, delta, pack, unpack
from infergy.store.integrity import IntegrityChecks
from infergy.store.jobs import JobRow, JobTable
from infergy.store.names import check_name
from infergy.store.outbox import OutboxTable
from infergy.store.schema import MIGRATIONS, PRAGMAS, SCHEMA_VERSION, user_version
from infergy.store.summary import RunSummary, summarize
from infergy.store.sweeps import SweepTable

__all__ = [
    "BUSY_TIMEOUT_S",
    "CODEC",
    "RUNNING",
    "SCHEMA_VERSION",
    "JobRow",
    "RunSummary",
    "Store",
]

BUSY_TIMEOUT_S = 10.0
"""How long a write waits for another process's write lock before failing."""

_HINT_CORRUPT = "the store file is damaged: move it away, or set [store] path to another file"
_HINT_LIST = "list the stored runs with `infergy runs list`"


class Store(OutboxTable, JobTable, SweepTable, IntegrityChecks):
    """An open results store: ``Store.open(path)``, best used as a context manager.

    Methods raise ``StoreError`` when the database fails, a run is unknown or stored data does
    not decode, and ``InputError`` for an invalid run id or source name. Threads may share an
    instance (calls are serialised), processes a file (writers wait ``BUSY_TIMEOUT_S``).
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating it and its directories) and migrate a store; refuse a newer schema."""
        try:  # isolation_level=None: no implicit transactions; _transaction opens them
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as err:
            msg = f"store {path}: cannot open: {getattr(err, 'strerror', None) or err}"
            raise StoreError(msg, hint="set [store] path to a writable location") from None
        store = cls(conn, path)
        try:
            with store._op("open it"):
                for pragma in PRAGMAS:
                    conn.execute(pragma).fetchall()
                store._migrate()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def save_run(
        self,
        result: Mapping[str, Any],
        traces: Mapping[str, Trace],
        queries: QueryLog | None,
        *,
        created_unix_ns: int | None = None,
    ) -> None:
        """Store one run in one transaction: result, traces (by source) and queries, or nothing.

        ``result`` follows the result contract: ``run_id`` and ``status`` are required, and it
        must be JSON without NaN. ``created_unix_ns`` (the listing order) defaults to now. An
        already stored run id is refused.
        """
        run_id = check_name("run id", result.get("run_id"))
        status = result.get("status")
        if not isinstance(status, str):
            msg = f"run {run_id}: the result has no status string (got {status!r})"
            raise StoreError(msg, hint="set result['status'] to 'ok', 'degraded' or 'failed'")
        try:
            result_json = json.dumps(result, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as err:
            msg = f"run {run_id}: the result is not storable as JSON: {err}"
            raise StoreError(msg, hint="absent figures are None, never NaN") from None
        meta = [v if isinstance(v := result.get(k), str) else None for k in _META]
        run_row = (run_id, time.time_ns() if created_unix_ns is None else created_unix_ns, status)
        trace_rows = [_trace_row(run_id, source, trace) for source, trace in sorted(traces.items())]
        with self._op(f"save run {run_id}"), self._transaction():
            # A checkpoint of this run (status "running") is replaced by the run itself.
            self._conn.execute(
                "DELETE FROM runs WHERE run_id = ? AND status = ?", (run_id, RUNNING)
            )
            try:
                self._conn.execute(
                    "INSERT INTO runs VALUES (?,?,?,?,?,?,?)", (*run_row, *meta, result_json)
                )
            except sqlite3.IntegrityError:
                msg = f"store {self.path}: run {run_id!r} is already stored"
                raise StoreError(msg, hint="run ids are unique: give this run a new id") from None
            self._conn.executemany("INSERT INTO traces VALUES (?,?,?,?,?,?,?,?)", trace_rows)
            if queries is not None:
                columns = [delta(queries.issue_ns), queries.latency_ns, queries.samples]
                row = (run_id, len(queries), CODEC, pack(columns))
                self._conn.execute("INSERT INTO queries VALUES (?,?,?,?)", row)

    def checkpoint_run(
        self,
        result: Mapping[str, Any],
        traces: Mapping[str, Trace],
        queries: QueryLog | None,
        *,
        created_unix_ns: int | None = None,
    ) -> None:
        """Keep what a run in progress has so far (status ``running``), replacing the last one.

        ``infergy serve`` checkpoints its sessions, so a process killed mid-run leaves its data
        behind; :meth:`mark_interrupted` turns such leftovers into ``aborted`` runs at startup.
        """
        if result.get("status") != RUNNING:
            msg = f"a checkpoint has status {RUNNING!r}, not {result.get('status')!r}"
            raise StoreError(msg)
        self.save_run(result, traces, queries, created_unix_ns=created_unix_ns)

    def drop_checkpoint(self, run_id: str) -> bool:
        """Delete a run's checkpoint (a run refused as bad input keeps nothing); a kept run stays.

        Returns:
            Whether a checkpoint was there.
        """
        with self._op(f"drop the checkpoint of {run_id}"), self._transaction():
            cur = self._conn.execute(
                "DELETE FROM runs WHERE run_id = ? AND status = ?", (run_id, RUNNING)
            )
            return cur.rowcount > 0

    def mark_interrupted(self, reason: str) -> list[str]:
        """Mark every ``running`` run ``aborted`` (with ``reason`` added to its problems).

        Returns:
            The run ids changed.
        """
        with self._op("mark interrupted runs"), self._transaction():
            rows = self._conn.execute(
                "SELECT run_id, result_json FROM runs WHERE status = ?", (RUNNING,)
            ).fetchall()
            for run_id, text in rows:
                try:
                    result = json.loads(text)
                except ValueError:  # a damaged row: its status still tells the truth
                    self._conn.execute(
                        "UPDATE runs SET status = ? WHERE run_id = ?", ("aborted", run_id)
                    )
                    continue
                result["status"] = "aborted"
                result["problems"] = [*result.get("problems", []), reason]
                self._conn.execute(
                    "UPDATE runs SET status = ?, result_json = ? WHERE run_id = ?",
                    ("aborted", json.dumps(result, ensure_ascii=False), run_id),
                )
        return [r[0] for r in rows]

    def find_result(self, run_id: str) -> dict[str, Any] | None:
        """The stored result of ``run_id``, or None when there is none (no error for unknown).

        Raises:
            DamagedRunError: the run is stored but its result does not decode.
        """
        with self._op(f"read run {run_id}"):
            row = self._conn.execute(
                "SELECT status, result_json FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return None if row is None else _decoded(self.path, run_id, row[0], row[1])

    def list_runs(self, limit: int = 50, status: str | None = None) -> list[RunSummary]:
        """The most recently stored runs, newest first; only those with ``status`` if given."""
        if limit < 1:
            msg = f"the number of runs to list must be at least 1, got {limit}"
            raise StoreError(msg)
        sql = (
            f"SELECT run_id, created_unix_ns, status, {', '.join(_META)}, result_json FROM runs"
            " WHERE ?1 IS NULL OR status = ?1 ORDER BY created_unix_ns DESC, rowid DESC LIMIT ?2"
        )
        with self._op("list runs"):
            rows = self._conn.execute(sql, (status, limit)).fetchall()
        return [summarize(row) for row in rows]

    def get_result(self, run_id: str) -> dict[str, Any]:
        """The stored result object of a run (``DamagedRunError`` if it does not decode)."""
        status, text = self._row_of(run_id, "SELECT status, result_json FROM runs WHERE run_id = ?")
        return _decoded(self.path, run_id, status, text)

    def get_traces(self, run_id: str) -> dict[str, Trace]:
        """The run's traces by source name (empty if it stored none)."""
        self._row_of(run_id, "SELECT 1 FROM runs WHERE run_id = ?")
        sql = (
            "SELECT source, semantics, nominal_period_ns, n_samples, has_uncertainty, codec,"
            " payload FROM traces WHERE run_id = ? ORDER BY source"
        )
        traces = {}
        with self._op(f"read the traces of run {run_id}"):
            rows = self._conn.execute(sql, (run_id,)).fetchall()
            for source, semantics, period_ns, n, has_u, codec, payload in rows:
                t_delta, values, *u = unpack(codec, payload, n, "iff" if has_u else "if")
                t_ns = np.cumsum(t_delta)
                traces[source] = Trace(t_ns, values, Semantics(semantics), period_ns, *u)
        return traces

    def get_queries(self, run_id: str) -> QueryLog | None:
        """The run's query log, or ``None`` if it stored none."""
        self._row_of(run_id, "SELECT 1 FROM runs WHERE run_id = ?")
        sql = "SELECT n, codec, payload FROM queries WHERE run_id = ?"
        with self._op(f"read the queries of run {run_id}"):
            row = self._conn.execute(sql, (run_id,)).fetchone()
            if row is None:
                return None
            issue_delta, latency_ns, samples = unpack(row[1], row[2], row[0], "iii")
            issue_ns = np.cumsum(issue_delta)
            return QueryLog(issue_ns, issue_ns + latency_ns, samples)

    def resolve(self, prefix: str) -> str:
        """The stored run id equal to ``prefix``, else the only one starting with it."""
        check_name("run id prefix", prefix)
        sql = "SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ? ORDER BY run_id LIMIT 6"
        with self._op(f"look up run {prefix}"):
            ids = [str(r[0]) for r in self._conn.execute(sql, (len(prefix), prefix))]
        if prefix in ids or len(ids) == 1:
            return prefix if prefix in ids else ids[0]
        if not ids:
            msg = f"store {self.path}: no run id starts with {prefix!r}"
            raise InputError(msg, hint=_HINT_LIST)  # the user's input, not the store, is wrong
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        msg = f"store {self.path}: run id prefix {prefix!r} is ambiguous ({shown})"
        raise InputError(msg, hint="give more characters of the run id")

    @contextmanager
    def _op(self, action: str) -> Iterator[None]:
        """Serialise a call; translate database and decoding errors into StoreErrors."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as err:
                msg = f"store {self.path}: cannot {action}: {err}"
                raise StoreError(msg, hint=_hint_for(err)) from None
            except (zlib.error, ValueError, TraceError) as err:
                msg = f"store {self.path}: cannot {action}: stored data is corrupt: {err}"
                raise StoreError(msg, hint=_HINT_CORRUPT) from None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")  # take the write lock now, not at first write
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:  # some errors (disk full) have rolled back already
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _row_of(self, run_id: str, sql: str) -> tuple[Any, ...]:
        """The row ``sql`` selects for a run; StoreError if there is no such run."""
        check_name("run id", run_id)
        with self._op(f"read run {run_id}"):
            row: tuple[Any, ...] | None = self._conn.execute(sql, (run_id,)).fetchone()
        if row is None:
            msg = f"store {self.path}: no run {run_id!r}"
            raise StoreError(msg, hint=_HINT_LIST)
        return row

    def _migrate(self) -> None:
        while (version := user_version(self._conn)) != SCHEMA_VERSION:
            if version > SCHEMA_VERSION:
                msg = (
                    f"store {self.path} has schema version {version}, newer than this"
                    f" infergy understands ({SCHEMA_VERSION})"
                )
                raise StoreError(msg, hint="upgrade infergy, or set [store] path elsewhere")
            with self._transaction():
                if user_version(self._conn) != version:  # another process migrated meanwhile
                    continue
                for statement in MIGRATIONS[version]:
                    self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {version + 1}")


_META = ("scenario", "model", "backend")
RUNNING = "running"
"""The status of a checkpointed run still in progress."""


def _decoded(path: Path, run_id: str, status: object, text: object) -> dict[str, Any]:
    """A row's result object; a row that does not decode raises ``DamagedRunError``."""
    try:
        result = json.loads(text) if isinstance(text, str | bytes) else None
    except ValueError as err:
        result, why = None, str(err)
    else:
        why = "it is not a JSON object"
    if not isinstance(result, dict):
        msg = f"store {path}: the stored result of run {run_id} is damaged ({why})"
        state = status if isinstance(status, str) else None
        raise DamagedRunError(msg, hint=_HINT_CORRUPT, status=state)
    return result


def _hint_for(err: sqlite3.Error) -> str:
    text = str(err).lower()
    if "locked" in text or "busy" in text:
        return "another process holds the store's write lock: retry when it is done"
    if "not a database" in text or "malformed" in text:
        return _HINT_CORRUPT
    if "already exists" in text or "no such table" in text:
        # the file's tables do not match its schema version (a development build wrote it)
        return (
            "the store's tables do not match its schema version: move the file aside (its runs"
            " stay readable with sqlite3) and let infergy create a new one"
        )
    return "check that the store's directory is writable and has free space"


def _trace_row(run_id: str, source: str, trace: Trace) -> tuple[object, ...]:
    check_name("source name", source, 64)
    u = [] if trace.uncertainty is None else [trace.uncertainty]
    payload = pack([delta(trace.t_ns), trace.values, *u])
    meta = (str(trace.semantics), trace.nominal_period_ns, len(trace), len(u))
    return (run_id, source, *meta, CODEC, payload)
