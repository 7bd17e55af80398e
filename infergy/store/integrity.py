"""Integrity checks of the results store: find what is damaged, repair what can be rebuilt.

A mixin of :class:`infergy.store.Store`. SQLite's ``quick_check`` finds damaged pages.
Indexes hold nothing that the tables do not, so a store whose indexes are damaged is rebuilt
from its tables into a new file (:meth:`IntegrityChecks.copy_into`, then :func:`swap_in`,
which keeps the damaged file beside it): every run whose own pages are intact is readable
again. What stays unreadable is found run by run (:meth:`IntegrityChecks.unreadable_runs`),
so a damaged run is named and the others are served.
"""

from __future__ import annotations

import json
import sqlite3
import time
import zlib
from contextlib import AbstractContextManager, suppress
from pathlib import Path

from infergy.errors import StoreError
from infergy.store.schema import MIGRATIONS, SCHEMA_VERSION

CHECK_LINES = 20
"""At most this many lines of ``quick_check`` are kept."""
TABLES = ("runs", "traces", "queries", "outbox", "jobs")
"""Every table of the schema (:mod:`infergy.store.schema`), parents first."""


class IntegrityChecks:
    """Check, repair and probe the store; every call is one transaction (or a read)."""

    _conn: sqlite3.Connection

    def _op(self, action: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def integrity_problems(self) -> list[str]:
        """What SQLite's ``quick_check`` finds (empty: the file is sound).

        A file too damaged to be checked yields the error itself as the one problem.
        """
        try:
            with self._op("check its integrity"):
                rows = self._conn.execute(f"PRAGMA quick_check({CHECK_LINES})").fetchall()
        except StoreError as err:
            return [str(err)]
        lines = [str(r[0]) for r in rows]
        return [] if lines == ["ok"] else [ln for text in lines for ln in text.splitlines()]

    def copy_into(self, target: Path) -> None:
        """A new copy of the store at ``target``, made row by row from the tables alone.

        Its indexes are built afresh: it is how a store whose indexes are damaged is rebuilt
        (``VACUUM INTO`` would copy the damaged index pages as they are). It fails if a table
        page is damaged.
        """
        fresh = sqlite3.connect(target, isolation_level=None)
        try:
            for statements in MIGRATIONS:
                for statement in statements:
                    fresh.execute(statement)
            fresh.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as err:
            msg = f"cannot create {target}: {err}"
            raise StoreError(msg, hint="check the store's folder has free space") from None
        finally:
            fresh.close()
        with self._op(f"copy itself into {target}"):
            self._conn.execute("ATTACH DATABASE ? AS fresh", (str(target),))
            try:
                with self._transaction():
                    for table in TABLES:  # WHERE 1: a row-by-row copy, not a page transfer
                        self._conn.execute(
                            f"INSERT INTO fresh.{table} SELECT * FROM main.{table} WHERE 1"
                        )
            finally:
                self._conn.execute("DETACH DATABASE fresh")

    def unreadable_runs(self, *, payloads: bool) -> tuple[dict[str, str], int]:
        """Runs that cannot be read (why, in one line each), and how many runs there are.

        A run is unreadable when its result (with ``payloads``: traces, query log) is. With
        ``payloads`` every stored run is read in full: use at start-up, in a worker thread,
        when :meth:`integrity_problems` found damage.
        """
        with self._op("list its runs"):
            ids = [str(r[0]) for r in self._conn.execute("SELECT run_id FROM runs")]
        damaged: dict[str, str] = {}
        for run_id in ids:
            try:
                with self._op(f"read run {run_id}"):
                    self._probe(run_id, payloads)
            except StoreError as err:
                damaged[run_id] = str(err).partition(f"cannot read run {run_id}: ")[2] or str(err)
        return damaged, len(ids)

    def _probe(self, run_id: str, payloads: bool) -> None:
        (text,) = self._conn.execute(
            "SELECT result_json FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if not isinstance(json.loads(text), dict):
            msg = "its result is not a JSON object"
            raise ValueError(msg)
        if not payloads:
            return
        for (payload,) in self._conn.execute(
            "SELECT payload FROM traces WHERE run_id = ?", (run_id,)
        ):
            zlib.decompress(payload)
        for (payload,) in self._conn.execute(
            "SELECT payload FROM queries WHERE run_id = ?", (run_id,)
        ):
            zlib.decompress(payload)


def swap_in(path: Path, copy: Path) -> Path:
    """Put the sound ``copy`` in place of the (closed) store at ``path``.

    The damaged file, with its WAL if any, is kept as ``<name>.damaged-<unix time>``: returned.
    """
    backup = path.with_name(f"{path.name}.damaged-{int(time.time())}")
    try:
        path.rename(backup)
        for suffix in ("-wal", "-shm"):  # they belong to the damaged file
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.rename(backup.with_name(backup.name + suffix))
        copy.rename(path)
    except OSError as err:
        msg = f"store {path}: cannot put its rebuilt copy in place: {err.strerror or err}"
        raise StoreError(msg, hint="check the store's folder is writable") from None
    return backup


def discard(copy: Path) -> None:
    """Remove a copy that will not be used (best effort)."""
    with suppress(OSError):
        copy.unlink()
