"""A damaged store is noticed and what is intact is served (issue 20, item 4).

Real SQLite files with real pages scrambled (the page numbers come from SQLite's own
``dbstat``), then the real ``infergy serve`` and ``infergy runs export`` processes: a damaged
index is found at start and rebuilt (every run exports again); a damaged table page is named,
run by run, while the other runs export; a broken result row is answered with its intact
status and a clear error, never a 500.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from infergy.core.trace import QueryLog, Semantics, Trace
from infergy.store.db import Store
from tests.integration.serve_support import ROOT, ServeProcess

pytestmark = pytest.mark.integration
RUNS = [f"run{i}" for i in range(6)]


def _make_store(path: Path) -> None:
    rng = np.random.default_rng(0)
    with Store.open(path) as store:
        for i, run_id in enumerate(RUNS):
            n = 20_000
            t = np.arange(n, dtype=np.int64) * 20_000_000 + i * 10**12
            traces = {
                f"gpu{j}": Trace(t, rng.normal(200, 5, n), Semantics.INSTANT, 20_000_000)
                for j in range(2)
            }
            queries = QueryLog(t[:5000], t[:5000] + 1000, np.ones(5000, dtype=np.int64))
            result = {"schema_version": 1, "run_id": run_id, "status": "ok", "problems": [],
                      "scenario": "offline"}  # fmt: skip
            store.save_run(result, traces, queries, created_unix_ns=i)
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _pages(path: Path, name: str, kind: str, *, root: bool = True) -> list[int]:
    with sqlite3.connect(path) as raw:
        try:
            rows = raw.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = ? AND (? OR path != '/')"
                " ORDER BY pageno",
                (name, kind, root),
            ).fetchall()
        except sqlite3.OperationalError as err:
            pytest.skip(f"this SQLite has no dbstat table to find pages with: {err}")
    return [int(r[0]) for r in rows]


def _scramble(path: Path, page: int) -> None:
    with sqlite3.connect(path) as raw:
        size = int(raw.execute("PRAGMA page_size").fetchone()[0])
    with path.open("r+b") as f:
        f.seek((page - 1) * size)
        f.write(np.random.default_rng(page).bytes(size))


def _export(config: Path, out: Path) -> dict[str, tuple[int, str]]:
    """``infergy runs export`` of every run, as processes side by side: (exit code, stderr)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = {}
    for run_id in RUNS:
        args = ["runs", "export", run_id, "--out", str(out), "--config", str(config)]
        procs[run_id] = subprocess.Popen(
            [sys.executable, "-m", "infergy", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
    done = {run_id: p.communicate(timeout=120)[1] for run_id, p in procs.items()}
    return {run_id: (procs[run_id].returncode, stderr) for run_id, stderr in done.items()}


def _start_and_stop(tmp_path: Path) -> tuple[ServeProcess, dict[str, object]]:
    serve = ServeProcess(tmp_path).start()
    try:
        health = serve.get("/healthz")[1]["components"]["store"]
    finally:
        rc, _ = serve.stop()
    assert rc == 0, serve.log()
    return serve, health


def test_a_damaged_index_is_found_at_start_and_rebuilt(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    _make_store(store)
    (index,) = _pages(store, "sqlite_autoindex_traces_1", "leaf")
    _scramble(store, index)
    serve, health = _start_and_stop(tmp_path)
    log = serve.log()
    assert f"store {store} is damaged" in log, log
    assert "rebuilt from its intact tables, every run is readable again" in log, log
    assert health["state"] == "degraded" and "rebuilt" in str(health["detail"]), health
    for run_id, (rc, stderr) in _export(serve.config, tmp_path / "export").items():
        assert rc == 0, (run_id, stderr)  # before the rebuild every one of them failed
        assert (tmp_path / "export" / run_id / "traces" / "gpu0.csv").is_file()


def test_a_damaged_table_page_names_its_runs_and_the_others_are_served(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    _make_store(store)
    leaves = _pages(store, "traces", "leaf", root=False)  # under an intact interior page
    assert len(leaves) > 1, leaves
    _scramble(store, leaves[len(leaves) // 2])
    serve, health = _start_and_stop(tmp_path)
    log = serve.log()
    named = [r for r in RUNS if f"run {r} cannot be read" in log]
    assert 1 <= len(named) < len(RUNS), log
    assert f"the other {len(RUNS) - len(named)} run(s) are intact and served" in log, log
    assert health["state"] == "degraded", health
    assert f"{len(named)} run(s) cannot be read" in str(health["detail"]), health
    for run_id, (rc, stderr) in _export(serve.config, tmp_path / "export").items():
        if run_id in named:
            assert rc == 1, (run_id, stderr)
            assert "Traceback" not in stderr and "malformed" in stderr, stderr
        else:
            assert rc == 0, (run_id, stderr)


def test_a_broken_result_row_is_a_clear_answer_not_a_500(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    _make_store(store)
    with sqlite3.connect(store) as raw:
        raw.execute("UPDATE runs SET result_json = '{\"run_id\": \"run2\", \"sta' WHERE run_id = ?",
                    ("run2",))  # fmt: skip
    serve = ServeProcess(tmp_path).start()
    try:
        status, body = serve.get("/v1/runs/run2")
        intact, whole = serve.get("/v1/runs/run3")
    finally:
        rc, _ = serve.stop()
    log = serve.log()
    assert status == 200, body
    assert body["state"] == "ok" and body["result"] is None, body  # the row's status is intact
    assert "the stored result of run run2 is damaged" in body["error"], body
    assert intact == 200 and whole["result"]["run_id"] == "run3", whole
    assert "run run2 cannot be read" in log, log  # found at start, too
    assert rc == 0 and "Traceback" not in log and "ERROR" not in log, log
