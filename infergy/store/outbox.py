"""The MQTT outbox table of the results store (policy and payloads: infergy.exporters.outbox).

A mixin of :class:`infergy.store.Store`: the same connection, lock and error translation.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager


@dataclasses.dataclass(frozen=True)
class OutboxEntry:
    """One queued MQTT message (``Store.outbox_peek``); ``topic`` is below the node's root."""

    id: int
    topic: str
    payload: bytes
    retain: bool
    created_unix_ns: int


class OutboxTable:
    """Queue, read and delete MQTT messages; every call is one transaction."""

    _conn: sqlite3.Connection

    def _op(self, action: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def outbox_append(
        self, messages: Sequence[tuple[str, bytes, bool]], *, max_entries: int
    ) -> list[int | None]:
        """Queue ``(topic, payload, retain)`` messages in one transaction; their ids, in order.

        A retained message replaces the queued ones of its topic (a retained topic holds only
        its latest value). A non-retained one is refused (``None``) while ``max_entries``
        non-retained messages are queued: the oldest are kept.
        """
        ids: list[int | None] = []
        now_ns = time.time_ns()
        with self._op("queue outbox messages"), self._transaction():
            for topic, payload, retain in messages:
                if retain:
                    sql = "DELETE FROM outbox WHERE topic = ? AND retain = 1"
                    self._conn.execute(sql, (topic,))
                else:
                    sql = "SELECT count(*) FROM outbox WHERE retain = 0"
                    if self._conn.execute(sql).fetchone()[0] >= max_entries:
                        ids.append(None)
                        continue
                sql = (
                    "INSERT INTO outbox (topic, payload, retain, created_unix_ns) VALUES (?,?,?,?)"
                )
                ids.append(self._conn.execute(sql, (topic, payload, int(retain), now_ns)).lastrowid)
        return ids

    def outbox_peek(self, limit: int) -> list[OutboxEntry]:
        """The ``limit`` oldest queued messages, oldest first (they stay queued)."""
        sql = "SELECT id, topic, payload, retain, created_unix_ns FROM outbox ORDER BY id LIMIT ?"
        with self._op("read the outbox"):
            rows = self._conn.execute(sql, (limit,)).fetchall()
        return [OutboxEntry(i, t, bytes(p), bool(r), c) for i, t, p, r, c in rows]

    def outbox_delete(self, ids: Sequence[int]) -> None:
        """Remove delivered messages (unknown ids are ignored), in one transaction."""
        with self._op("delete delivered outbox messages"), self._transaction():
            self._conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def outbox_count(self) -> int:
        """How many messages are queued."""
        with self._op("count the outbox"):
            return int(self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
