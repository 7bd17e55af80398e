"""The SQLite results store: round trips, listing, ids, migrations, errors, crash safety."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import infergy.store.db as store_module
from infergy.config.paths import default_store_path
from infergy.core.trace import NS_PER_S, QueryLog, Semantics, Trace
from infergy.errors import InputError, StoreError
from infergy.store.codec import pack
from infergy.store.db import SCHEMA_VERSION, Store

REPO = Path(__file__).resolve().parents[3]
T0 = 1_750_000_000 * NS_PER_S


def result_of(run_id: str, **extra: Any) -> dict[str, Any]:
    return {"schema_version": 1, "run_id": run_id, "status": "ok", "scenario": "offline"} | extra


def make_run(i: int, n: int = 200_000) -> tuple[dict[str, Any], dict[str, Trace], QueryLog]:
    """A deterministic run with large, incompressible traces (also used by the crash child)."""
    rng = np.random.default_rng(i)
    t = T0 + i * 10**12 + np.cumsum(rng.integers(9_000_000, 11_000_000, n))
    values = rng.normal(250.0, 20.0, n)
    values[rng.integers(0, n, 50)] = np.nan
    traces = {
        "gpu0": Trace(t, values, Semantics.INSTANT, 10_000_000),
        "gpus": Trace(t, rng.normal(500.0, 30.0, n), Semantics.INTERVAL_MEAN, 10_000_000),
        "ac": Trace(
            t, rng.normal(900.0, 50.0, n), Semantics.INTERVAL_MEAN, 10_000_000, rng.random(n)
        ),
    }
    issue = np.sort(rng.integers(t[0], t[-1], n // 10))
    queries = QueryLog(
        issue, issue + rng.integers(1, 10**8, issue.size), rng.integers(1, 9, issue.size)
    )
    result = result_of(f"run-{i:04d}", performance={"samples_per_second": float(i)})
    return result, traces, queries


def assert_same_trace(a: Trace, b: Trace) -> None:
    assert a.semantics is b.semantics
    assert a.nominal_period_ns == b.nominal_period_ns
    assert a.t_ns.dtype == np.int64 and np.array_equal(a.t_ns, b.t_ns)
    assert a.values.tobytes() == b.values.tobytes()  # bit for bit, NaN included
    assert (a.uncertainty is None) == (b.uncertainty is None)
    if a.uncertainty is not None and b.uncertainty is not None:
        assert a.uncertainty.tobytes() == b.uncertainty.tobytes()


def assert_same_queries(a: QueryLog | None, b: QueryLog) -> None:
    assert a is not None
    for name in ("issue_ns", "complete_ns", "samples"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store.open(tmp_path / "state" / "infergy.db") as s:
        yield s


# -- paths -----------------------------------------------------------------------------------


def test_default_path_prefers_systemd_state_directory_then_xdg_then_home() -> None:
    assert default_store_path(
        {"STATE_DIRECTORY": "/var/lib/infergy:/var/lib/other", "XDG_STATE_HOME": "/x"}
    ) == Path("/var/lib/infergy/infergy.db")
    assert default_store_path({"XDG_STATE_HOME": "/xdg", "HOME": "/h"}) == Path(
        "/xdg/infergy/infergy.db"
    )
    relative_xdg_is_ignored = {"XDG_STATE_HOME": "rel", "HOME": "/h"}
    assert default_store_path(relative_xdg_is_ignored) == Path("/h/.local/state/infergy/infergy.db")
    assert default_store_path({}) == Path.home() / ".local/state/infergy/infergy.db"


def test_open_creates_directories_and_sets_up_wal_and_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "infergy.db"
    with Store.open(path) as s:
        conn = s._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    # sqlite_sequence: the outbox's AUTOINCREMENT (ids never reused, so id order is queue order)
    assert tables == {"runs", "traces", "queries", "outbox", "jobs", "sweeps", "sqlite_sequence"}


# -- round trips -----------------------------------------------------------------------------


def test_a_run_round_trips_exactly(store: Store) -> None:
    result, traces, queries = make_run(1, n=5_000)
    result["efficiency"] = {"ac": {"joules_per_query": None}}  # nulls survive
    store.save_run(result, traces, queries)
    assert store.get_result("run-0001") == result
    got = store.get_traces("run-0001")
    assert list(got) == ["ac", "gpu0", "gpus"]
    for source, trace in traces.items():
        assert_same_trace(got[source], trace)
    assert_same_queries(store.get_queries("run-0001"), queries)


def test_a_run_without_traces_or_queries(store: Store) -> None:
    store.save_run(result_of("bare"), {}, None)
    assert store.get_traces("bare") == {}
    assert store.get_queries("bare") is None


_times = st.lists(st.integers(1, 10**12), max_size=300).map(
    lambda d: np.cumsum(np.array(d, dtype=np.int64)) + T0
)


@settings(max_examples=40)
@given(data=st.data(), t=_times, sem=st.sampled_from(Semantics), with_u=st.booleans())
def test_any_trace_and_query_log_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
    t: Any,
    sem: Semantics,
    with_u: bool,
) -> None:
    floats = hnp.arrays(np.float64, t.size, elements=st.floats(allow_nan=True, allow_infinity=True))
    trace = Trace(t, data.draw(floats), sem, 1, data.draw(floats) if with_u else None)
    issue = data.draw(hnp.arrays(np.int64, t.size, elements=st.integers(-(2**62), 2**62)))
    queries = QueryLog(issue, issue + np.arange(t.size), np.ones(t.size, dtype=np.int64))
    with Store.open(tmp_path_factory.mktemp("prop") / "s.db") as s:
        s.save_run(result_of("r"), {"x": trace}, queries)
        assert_same_trace(s.get_traces("r")["x"], trace)
        assert_same_queries(s.get_queries("r"), queries)


def test_regular_sampling_compresses_to_almost_nothing(store: Store) -> None:
    n = 100_000
    t = T0 + np.arange(n, dtype=np.int64) * NS_PER_S
    trace = Trace(t, np.full(n, 123.25), Semantics.INTERVAL_MEAN, NS_PER_S)
    store.save_run(result_of("r"), {"ac": trace}, None)
    (size,) = store._conn.execute("SELECT length(payload) FROM traces").fetchone()
    assert size < 0.005 * 16 * n  # < 0.5 % of the raw 16 bytes per sample


# -- writes are all or nothing ---------------------------------------------------------------


def test_a_duplicate_run_id_is_refused_and_the_stored_run_kept(store: Store) -> None:
    result, traces, queries = make_run(2, n=1_000)
    store.save_run(result, traces, queries)
    with pytest.raises(StoreError, match="already stored") as info:
        store.save_run(result | {"status": "failed"}, {"ac": traces["ac"]}, None)
    assert info.value.hint
    assert store.get_result("run-0002")["status"] == "ok"
    assert list(store.get_traces("run-0002")) == ["ac", "gpu0", "gpus"]


def test_a_failure_inside_the_transaction_leaves_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, traces, queries = make_run(3, n=1_000)
    real_pack, calls = pack, []

    def failing_pack(columns: Any) -> bytes:
        calls.append(1)
        if len(calls) == len(traces) + 1:  # the query log is packed inside the transaction
            raise sqlite3.OperationalError("disk I/O error")
        return real_pack(columns)

    monkeypatch.setattr(store_module, "pack", failing_pack)  # where store/db.py looks it up
    with pytest.raises(StoreError, match="cannot save run run-0003: disk I/O error"):
        store.save_run(result, traces, queries)
    assert store.list_runs() == []
    assert store._conn.execute("SELECT count(*) FROM traces").fetchone()[0] == 0
    monkeypatch.setattr(store_module, "pack", real_pack)
    store.save_run(result, traces, queries)  # the store is still usable
    assert [r.run_id for r in store.list_runs()] == ["run-0003"]


@pytest.mark.parametrize(
    ("result", "traces", "error", "match"),
    [
        (result_of("../etc"), {}, InputError, "invalid run id"),
        (result_of(".hidden"), {}, InputError, "invalid run id"),
        ({"status": "ok"}, {}, InputError, "invalid run id None"),
        (result_of("r", status=None), {}, StoreError, "no status"),
        (result_of("r", power={"ac": {"average_watts": float("nan")}}), {}, StoreError, "JSON"),
        (result_of("r"), {"a/b": None}, InputError, "invalid source name"),
    ],
)
def test_invalid_runs_are_refused_before_anything_is_written(
    store: Store, result: dict[str, Any], traces: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        store.save_run(result, traces, None)
    assert store.list_runs() == []


# -- listing and lookup ----------------------------------------------------------------------


def test_list_runs_newest_first_with_limit_and_status(store: Store) -> None:
    for i, status in enumerate(["ok", "failed", "ok", "degraded"]):
        store.save_run(result_of(f"r{i}", status=status), {}, None, created_unix_ns=T0 + i)
    assert [r.run_id for r in store.list_runs()] == ["r3", "r2", "r1", "r0"]
    assert [r.run_id for r in store.list_runs(limit=2)] == ["r3", "r2"]
    assert [r.run_id for r in store.list_runs(status="ok")] == ["r2", "r0"]
    assert store.list_runs(status="nope") == []
    with pytest.raises(StoreError, match="at least 1"):
        store.list_runs(limit=0)


def test_summaries_carry_headline_numbers_of_the_wall_power_first(store: Store) -> None:
    eff = {
        "gpu0": {"samples_per_second_per_watt": 9.0, "joules_per_query": 0.1},
        "gpus": {"samples_per_second_per_watt": 8.0, "joules_per_query": 0.2},
        "ac1": {"samples_per_second_per_watt": 2.0, "joules_per_query": 3},
    }
    result = result_of(
        "r", model="resnet50", backend="onnxruntime", performance={"samples_per_second": 812.5}
    )
    store.save_run(result | {"efficiency": eff}, {}, None, created_unix_ns=T0)
    store.save_run(result_of("bare", scenario=None), {}, None, created_unix_ns=T0 - 1)
    full, bare = store.list_runs()
    assert (full.run_id, full.created_unix_ns, full.status) == ("r", T0, "ok")
    assert (full.scenario, full.model, full.backend) == ("offline", "resnet50", "onnxruntime")
    assert full.samples_per_second == 812.5
    assert full.headline_source == "ac1"
    assert (full.samples_per_second_per_watt, full.joules_per_query) == (2.0, 3.0)
    assert json.loads(json.dumps(full.as_dict()))["samples_per_second_per_watt"] == 2.0
    assert bare.headline_source is None
    assert (bare.scenario, bare.samples_per_second, bare.joules_per_query) == (None, None, None)


def test_resolve_prefixes(store: Store) -> None:
    for run_id in ("2026-01-01_abc", "2026-01-01_abd", "run1", "run10", "x_y"):
        store.save_run(result_of(run_id), {}, None)
    assert store.resolve("2026-01-01_abc") == "2026-01-01_abc"
    assert store.resolve("2026-01-01_abd") == "2026-01-01_abd"
    assert store.resolve("run1") == "run1"  # exact beats prefix of run10
    assert store.resolve("run10") == "run10"
    assert store.resolve("x") == "x_y"  # '_' is literal, not a LIKE wildcard
    with pytest.raises(InputError, match=r"ambiguous \(2026-01-01_abc, 2026-01-01_abd\)"):
        store.resolve("2026")
    with pytest.raises(InputError, match="no run id starts with 'zz'") as info:
        store.resolve("zz")
    assert "infergy runs" in (info.value.hint or "")
    with pytest.raises(InputError):
        store.resolve("")


def test_reading_an_unknown_run_is_a_store_error(store: Store) -> None:
    for read in (store.get_result, store.get_traces, store.get_queries):
        with pytest.raises(StoreError, match="no run 'missing'"):
            read("missing")


# -- schema versions and damaged files -------------------------------------------------------


def test_reopening_keeps_runs_and_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store.open(path) as s:
        s.save_run(result_of("kept"), {}, None)
    with Store.open(path) as s:
        assert [r.run_id for r in s.list_runs()] == ["kept"]


def test_a_store_from_a_newer_infergy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store.open(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer") as info:
        Store.open(path)
    assert "upgrade infergy" in (info.value.hint or "")


def test_tables_that_do_not_match_the_schema_version_say_so(tmp_path: Path) -> None:
    """A development build's store: version 3 with a later step's table already there."""
    path = tmp_path / "s.db"
    Store.open(path).close()
    raw = sqlite3.connect(path)
    raw.execute("DROP TABLE jobs")
    raw.execute("PRAGMA user_version = 3")
    raw.close()
    with pytest.raises(StoreError, match="already exists") as info:
        Store.open(path)
    assert "do not match its schema version" in (info.value.hint or ""), info.value.hint


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the pages you are looking for" * 100)
    with pytest.raises(StoreError, match="not a database") as info:
        Store.open(path)
    assert "not an intact infergy store" in (info.value.hint or "") or "damaged" in (
        info.value.hint or ""
    )


def test_an_unusable_location_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot open"):
        Store.open(tmp_path / "file" / "infergy.db")


def test_corrupt_payloads_are_reported_not_returned(store: Store) -> None:
    result, traces, queries = make_run(4, n=100)
    store.save_run(result, traces, queries)
    conn = store._conn
    conn.execute("UPDATE traces SET payload = x'00ff00ff' WHERE source = 'gpu0'")
    with pytest.raises(StoreError, match="corrupt"):
        store.get_traces("run-0004")
    conn.execute("UPDATE queries SET codec = 'lz4-9'")
    with pytest.raises(StoreError, match="unknown codec 'lz4-9'"):
        store.get_queries("run-0004")
    conn.execute("UPDATE runs SET result_json = '{oops'")
    with pytest.raises(StoreError, match="corrupt"):
        store.get_result("run-0004")


def test_a_locked_store_fails_with_a_hint_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "s.db"
    with Store.open(path) as s:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked") as info:
            s.save_run(result_of("r"), {}, None)
        assert "another process" in (info.value.hint or "")
        other.execute("ROLLBACK")
        s.save_run(result_of("r"), {}, None)


def test_a_closed_store_raises_store_error(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "s.db")
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.list_runs()


def test_threads_may_share_one_store(store: Store) -> None:
    def save(k: int) -> None:
        for j in range(10):
            result, traces, queries = make_run(k * 100 + j, n=200)
            store.save_run(result, traces, queries)

    threads = [threading.Thread(target=save, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(store.list_runs(limit=100)) == 40


# -- crash safety ----------------------------------------------------------------------------

_CHILD = """
import sys, time
from pathlib import Path
from tests.unit.store.test_store import make_run
from infergy.store.db import Store

path, start, stall_at = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
with Store.open(path) as store:
    current = [start]
    def on_sql(sql):
        # Instrumentation only: lets the parent kill at a known point of the write.
        if sql.startswith("INSERT INTO queries") and current[0] == stall_at:
            print(f"stalled {current[0]}", flush=True)
            time.sleep(30)
    store._conn.set_trace_callback(on_sql)
    for i in range(start, start + 1000):
        current[0] = i
        run = make_run(i)
        print(f"begin {i}", flush=True)
        store.save_run(*run)
        print(f"done {i}", flush=True)
"""


def _write_until_killed(path: Path, start: int, stall_at: int, kill_after_begin: int) -> set[int]:
    """Run the writer child; SIGKILL it on 'stalled' or after 'begin <kill_after_begin>'."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-c", _CHILD, str(path), str(start), str(stall_at)]
    done: set[int] = set()
    with subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as child:
        watchdog = threading.Timer(60, child.kill)
        watchdog.start()
        try:
            assert child.stdout is not None and child.stderr is not None
            for line in child.stdout:
                word, i = line.split()
                if word == "done":
                    done.add(int(i))
                if word == "stalled" or (word == "begin" and int(i) == kill_after_begin):
                    if word == "begin":  # let the write get going (packing, then SQL)
                        threading.Event().wait(0.15)
                    child.send_signal(signal.SIGKILL)
                    break
            child.wait()
            errors = child.stderr.read()
        finally:
            watchdog.cancel()
    assert child.returncode == -signal.SIGKILL, errors
    return done


def _check_after_crash(
    path: Path, committed: set[int], in_flight: int, must_be_absent: bool
) -> set[int]:
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    orphans = raw.execute(
        "SELECT (SELECT count(*) FROM traces WHERE run_id NOT IN (SELECT run_id FROM runs))"
        " + (SELECT count(*) FROM queries WHERE run_id NOT IN (SELECT run_id FROM runs))"
    ).fetchone()[0]
    assert orphans == 0
    raw.close()
    with Store.open(path) as s:
        listed = {int(r.run_id.removeprefix("run-")) for r in s.list_runs(limit=1000)}
        assert committed <= listed, "a run reported as saved is missing"
        assert listed <= committed | {in_flight}, "a run that was never written appeared"
        if must_be_absent:
            assert in_flight not in listed, "the run killed before COMMIT is visible"
        for i in listed:
            result, traces, queries = make_run(i)
            assert s.get_result(f"run-{i:04d}") == result
            got = s.get_traces(f"run-{i:04d}")
            assert sorted(got) == sorted(traces)
            for source, trace in traces.items():
                assert_same_trace(got[source], trace)
            assert_same_queries(s.get_queries(f"run-{i:04d}"), queries)
    return listed


def test_sigkill_mid_write_leaves_only_complete_runs(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    # 1. Killed inside the transaction: the runs row and ~5 MB of traces are written (and
    #    spilled to the WAL), the query log insert has begun, COMMIT has not happened.
    committed = _write_until_killed(path, start=0, stall_at=2, kill_after_begin=-1)
    assert committed == {0, 1}
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size > 4_000_000, "the killed write never reached the WAL file"
    listed = _check_after_crash(path, committed, in_flight=2, must_be_absent=True)
    # 2. The store keeps working after the crash; then a kill at a less predictable moment.
    committed |= _write_until_killed(path, start=10, stall_at=-1, kill_after_begin=12)
    assert {10, 11} <= committed
    listed = _check_after_crash(path, committed, in_flight=12, must_be_absent=False)
    assert listed >= {0, 1, 10, 11}


def test_checkpoints_are_replaced_by_the_run_and_leftovers_marked_aborted(tmp_path: Path) -> None:
    result, traces, queries = make_run(7, n=2_000)
    running = result | {"status": "running"}
    with Store.open(tmp_path / "s.db") as st:
        st.checkpoint_run(running, {"gpu0": traces["gpu0"]}, None)
        st.checkpoint_run(running, traces, queries)  # the newer checkpoint replaces the older
        assert set(st.get_traces(result["run_id"])) == {"gpu0", "gpus", "ac"}
        st.save_run(result, traces, queries)  # the finished run replaces its checkpoint
        assert st.get_result(result["run_id"])["status"] == "ok"
        with pytest.raises(StoreError):
            st.save_run(result, traces, queries)  # a finished run is never replaced
        other, t2, q2 = make_run(8, n=2_000)
        st.checkpoint_run(other | {"status": "running"}, t2, q2)
        with pytest.raises(StoreError):
            st.checkpoint_run(other, t2, q2)  # only "running" is a checkpoint
    with Store.open(tmp_path / "s.db") as st:  # a new process after a kill
        assert st.mark_interrupted("the service stopped") == [other["run_id"]]
        kept = st.get_result(other["run_id"])
        assert kept["status"] == "aborted" and kept["problems"] == ["the service stopped"]
        assert_same_trace(st.get_traces(other["run_id"])["ac"], t2["ac"])
        assert st.find_result("nope") is None
        assert st.find_result(other["run_id"]) == kept


def test_a_dropped_checkpoint_leaves_nothing_and_a_kept_run_is_never_dropped(
    tmp_path: Path,
) -> None:
    result, traces, queries = make_run(9, n=500)
    with Store.open(tmp_path / "s.db") as st:
        st.checkpoint_run(result | {"status": "running"}, traces, queries)
        assert st.drop_checkpoint(result["run_id"]) is True
        assert st.find_result(result["run_id"]) is None and st.list_runs() == []
        assert st.drop_checkpoint(result["run_id"]) is False
        st.save_run(result, traces, queries)
        assert st.drop_checkpoint(result["run_id"]) is False  # only a checkpoint goes
        assert st.get_result(result["run_id"])["status"] == "ok"
        assert set(st.get_traces(result["run_id"])) == set(traces)  # the kept run intact


def test_a_sweep_record_is_replaced_as_it_grows_and_an_interrupted_one_is_marked(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        record = {"sweep_id": "mq-1", "status": "running", "created_unix_ns": 5, "points": []}
        store.save_sweep(record)
        store.save_sweep({**record, "points": [{"index": 1}]})
        assert store.get_sweep("mq")["points"] == [{"index": 1}]  # a unique prefix is enough
        store.save_sweep({"sweep_id": "mq-2", "status": "ok", "created_unix_ns": 9})
        assert [r["sweep_id"] for r in store.list_sweeps()] == ["mq-2", "mq-1"]
        assert store.mark_sweeps_interrupted("killed") == ["mq-1"]
        left = store.get_sweep("mq-1")
        assert left["status"] == "aborted" and left["problems"] == ["killed"]
        assert store.find_sweep("mq-3") is None
        with pytest.raises(InputError, match="ambiguous"):
            store.resolve_sweep("mq")
        with pytest.raises(StoreError, match="not storable as JSON"):
            store.save_sweep({"sweep_id": "mq-4", "status": "ok", "x": float("nan")})
