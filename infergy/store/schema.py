"""The schema of the results store (:mod:`infergy.store`): its tables and connection settings.

The schema is versioned by ``PRAGMA user_version``: ``Store.open`` runs the steps of
``MIGRATIONS`` not yet applied, one transaction each, and refuses a file newer than
``SCHEMA_VERSION``. The ``outbox`` table belongs to :mod:`infergy.store.outbox`, ``jobs`` to
:mod:`infergy.store.jobs`, ``sweeps`` to :mod:`infergy.store.sweeps`.
"""

from __future__ import annotations

import sqlite3

# Step i (0-based) runs in one transaction and sets user_version to i + 1. Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY NOT NULL, created_unix_ns INTEGER NOT NULL,"
        " status TEXT NOT NULL, scenario TEXT, model TEXT, backend TEXT,"
        " result_json TEXT NOT NULL)",
        "CREATE INDEX runs_by_created ON runs (created_unix_ns)",
        "CREATE TABLE traces (run_id TEXT NOT NULL REFERENCES runs ON DELETE CASCADE,"
        " source TEXT NOT NULL, semantics TEXT NOT NULL, nominal_period_ns INTEGER NOT NULL,"
        " n_samples INTEGER NOT NULL, has_uncertainty INTEGER NOT NULL, codec TEXT NOT NULL,"
        " payload BLOB NOT NULL, PRIMARY KEY (run_id, source))",
        "CREATE TABLE queries (run_id TEXT PRIMARY KEY NOT NULL REFERENCES runs ON DELETE CASCADE,"
        " n INTEGER NOT NULL, codec TEXT NOT NULL, payload BLOB NOT NULL)",
    ),
    (  # The MQTT outbox (infergy.exporters.outbox): published at QoS 1 in id order, then deleted.
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
        " payload BLOB NOT NULL, retain INTEGER NOT NULL, created_unix_ns INTEGER NOT NULL)",
    ),
    (  # The job journal (infergy.store.jobs): every job accepted, written before the 202.
        "CREATE TABLE jobs (run_id TEXT PRIMARY KEY NOT NULL, submitted_unix_ns INTEGER NOT NULL,"
        " state TEXT NOT NULL, spec_json TEXT NOT NULL, started_unix_ns INTEGER,"
        " finished_unix_ns INTEGER, error TEXT, clock_offset_ns INTEGER)",
        "CREATE INDEX jobs_by_state ON jobs (state, submitted_unix_ns)",
    ),
    (  # MaxQ sweep records (infergy.store.sweeps; the schema in docs/maxq.md); points are runs.
        "CREATE TABLE sweeps (sweep_id TEXT PRIMARY KEY NOT NULL, created_unix_ns INTEGER NOT"
        " NULL, status TEXT NOT NULL, record_json TEXT NOT NULL)",
        "CREATE INDEX sweeps_by_created ON sweeps (created_unix_ns)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this code writes."""

# synchronous=FULL: a committed run survives power loss, not only a crash. (The busy timeout is
# sqlite3.connect's.)
PRAGMAS = ("PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "PRAGMA foreign_keys = ON")


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version of the database ``conn`` is open on (0: a new, empty file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])
