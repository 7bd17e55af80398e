"""The MQTT outbox: results waiting for the broker, durable in the SQLite store.

``Outbox.put_result`` commits a result for the ``runs`` topic, and its ``runs/latest``
retained copy, to the store (WAL, ``synchronous=FULL``) before it returns, so a result survives
a SIGKILL or a power cut between being measured and being acknowledged by the broker. The
publisher (:mod:`infergy.exporters.mqtt`) reads the oldest entries, publishes them at QoS 1 in
id order and deletes an entry only after the broker's PUBACK: delivery is at least once, in
order, however long the broker is away::

    outbox = Outbox(store, max_entries=settings.mqtt.outbox_max_entries)
    outbox.put_result(result)        # durable when it returns; any thread
    entries = outbox.peek(32)        # the publisher's side
    outbox.ack([e.id for e in entries])

Bounded size: at most ``max_entries`` results wait for ``runs``. When that many are queued
(at the default 100,000 with results of a few kB, some hundreds of MB, or weeks of runs every
minute), a new result is *not* queued for ``runs``: the oldest are kept, because they are the
ones a consumer has not seen and order matters; the refusal is logged as an error naming the
run and counted (``refused_total``), and the result is still in the store (``infergy runs
show``, the HTTP API) and still becomes ``runs/latest``. Nothing is dropped silently.
``runs/latest`` is at most one queued entry: a newer result replaces an unsent older one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from infergy.errors import InputError
from infergy.store.db import Store
from infergy.store.outbox import OutboxEntry

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "MAXQ_LATEST_TOPIC",
    "MAXQ_TOPIC",
    "RUNS_LATEST_TOPIC",
    "RUNS_TOPIC",
    "Outbox",
    "OutboxEntry",
]

RUNS_TOPIC = "runs"
"""Every result, QoS 1, not retained (below ``<topic_root>/<node>/``)."""
RUNS_LATEST_TOPIC = "runs/latest"
"""The newest result, QoS 1, retained."""
MAXQ_TOPIC = "maxq"
"""Every finished MaxQ sweep record (docs/maxq.md), QoS 1, not retained."""
MAXQ_LATEST_TOPIC = "maxq/latest"
"""The newest sweep record, QoS 1, retained."""
DEFAULT_MAX_ENTRIES = 100_000

_log = logging.getLogger("infergy.mqtt.outbox")


def encode_result(result: Mapping[str, Any]) -> bytes:
    """A result as compact UTF-8 JSON (no NaN: absent figures are ``null``).

    Raises:
        InputError: the result is not JSON-serialisable.
    """
    try:
        text = json.dumps(result, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        msg = f"result {result.get('run_id')!r} cannot be published as JSON: {err}"
        raise InputError(msg, hint="absent figures are None, never NaN") from None
    return text.encode()


class Outbox:
    """Durable FIFO of results to publish, kept in the store's ``outbox`` table.

    Thread-safe (the store serialises calls). Listeners are called after each commit, from
    the committing thread: the publisher uses one to wake its drain loop.

    Args:
        store: the open results store (its ``outbox`` table is the queue).
        max_entries: results waiting for ``runs`` at most (see the module's size policy).
    """

    def __init__(self, store: Store, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            msg = f"the outbox must hold at least one entry, got max_entries={max_entries}"
            raise InputError(msg, hint="set [mqtt] outbox_max_entries >= 1")
        self._store = store
        self._max_entries = max_entries
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.refused_total = 0
        """Results not queued for ``runs`` because the outbox was full."""

    @property
    def max_entries(self) -> int:
        """The bound on results waiting for ``runs``."""
        return self._max_entries

    def put_result(self, result: Mapping[str, Any]) -> bool:
        """Queue a result on ``runs`` and as ``runs/latest``; durable when this returns.

        Returns:
            ``True`` if queued for ``runs``; ``False`` if the outbox was full (logged, counted;
            ``runs/latest`` is updated all the same).

        Raises:
            InputError: the result is not JSON-serialisable.
            StoreError: the store cannot be written.
        """
        payload = encode_result(result)
        run_ids = self._store.outbox_append(
            [(RUNS_TOPIC, payload, False), (RUNS_LATEST_TOPIC, payload, True)],
            max_entries=self._max_entries,
        )
        queued = run_ids[0] is not None
        if not queued:
            with self._lock:
                self.refused_total += 1
            _log.error(
                "MQTT outbox full (%d results waiting): result %s is not queued for 'runs'"
                " (it is in the store and updates 'runs/latest')",
                self._max_entries,
                result.get("run_id"),
            )
        self._notify()
        return queued

    def put_sweep(self, record: Mapping[str, Any]) -> bool:
        """Queue a finished sweep's record on ``maxq`` and as ``maxq/latest`` (as results).

        Returns:
            ``True`` if queued for ``maxq``; ``False`` if the outbox was full.
        """
        payload = encode_result(record)
        ids = self._store.outbox_append(
            [(MAXQ_TOPIC, payload, False), (MAXQ_LATEST_TOPIC, payload, True)],
            max_entries=self._max_entries,
        )
        queued = ids[0] is not None
        if not queued:
            with self._lock:
                self.refused_total += 1
            _log.error(
                "MQTT outbox full: sweep %s is not queued for 'maxq'", record.get("sweep_id")
            )
        self._notify()
        return queued

    def peek(self, limit: int) -> list[OutboxEntry]:
        """The ``limit`` oldest entries, oldest first; they stay queued until ``ack``."""
        return self._store.outbox_peek(limit)

    def ack(self, ids: Sequence[int]) -> None:
        """Delete entries the broker acknowledged (ids no longer queued are ignored)."""
        if ids:
            self._store.outbox_delete(ids)

    def pending(self) -> int:
        """How many entries are queued (``runs`` and ``runs/latest`` together)."""
        return self._store.outbox_count()

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every ``put_result`` commit (from that caller's thread)."""
        with self._lock:
            self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback`` (no error if it was not registered)."""
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            try:
                callback()
            except Exception:  # a listener's bug must not fail the caller's durable write
                _log.exception("outbox listener %r failed", callback)
