"""Integrity checks of the results store: find what is damaged, repair what can be rebuilt.

A mixin of :class:`infergy.store.Store`. SQLite's ``quick_check`` finds damaged pages;
indexes hold nothing that the tables do not, so a damaged index is rebuilt (``REINDEX``),
which makes every run whose own pages are intact readable again. What stays unreadable is
found run by run (:meth:`IntegrityChecks.unreadable_runs`), so a damaged run is named and the
others are served.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from contextlib import AbstractContextManager

from infergy.errors import StoreError

CHECK_LINES = 20
"""At most this many lines of ``quick_check`` are kept."""


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

    def rebuild_indexes(self) -> None:
        """``REINDEX``: rebuild every index from its table (fails if a table is damaged)."""
        with self._op("rebuild its indexes"), self._transaction():
            self._conn.execute("REINDEX")

    def unreadable_runs(self) -> dict[str, str]:
        """Runs whose result, traces or query log cannot be read, with why (one line each).

        Reads every stored run in full: use at start-up, in a worker thread.
        """
        with self._op("list its runs"):
            ids = [str(r[0]) for r in self._conn.execute("SELECT run_id FROM runs")]
        damaged: dict[str, str] = {}
        for run_id in ids:
            try:
                with self._op(f"read run {run_id}"):
                    self._probe(run_id)
            except StoreError as err:
                damaged[run_id] = str(err).partition(f"cannot read run {run_id}: ")[2] or str(err)
        return damaged

    def _probe(self, run_id: str) -> None:
        (text,) = self._conn.execute(
            "SELECT result_json FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        json.loads(text)
        for (payload,) in self._conn.execute(
            "SELECT payload FROM traces WHERE run_id = ?", (run_id,)
        ):
            zlib.decompress(payload)
        for (payload,) in self._conn.execute(
            "SELECT payload FROM queries WHERE run_id = ?", (run_id,)
        ):
            zlib.decompress(payload)
