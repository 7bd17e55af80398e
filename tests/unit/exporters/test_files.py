"""Result files: layout, round trips through the readers, the MLPerf layout, safety, atomicity."""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import infergy.exporters.files as files_module
from infergy.core.trace import NS_PER_S, QueryLog, Semantics, Trace
from infergy.errors import InputError
from infergy.exporters.files import write_run_files
from infergy.formats.csv import format_queries_csv, load_queries_csv, parse_trace_csv
from infergy.formats.ptd import parse_ptd_log

T0 = 1_750_000_000 * NS_PER_S + 123_000_000
# power-dev's own pattern for spl.txt sample lines (shared/research/ptd.md)
SPL_LINE = re.compile(
    r"^Time,[^,]*,Watts,[^,]*,Volts,(?P<v>[^,]*),Amps,(?P<a>[^,]*),PF,[^,]*,Mark,(?P<mark>[^,]*)$"
)


def trace(n: int = 20, sem: Semantics = Semantics.INTERVAL_MEAN, **kw: Any) -> Trace:
    t = T0 + np.arange(1, n + 1, dtype=np.int64) * NS_PER_S
    values = 300.0 + np.arange(n) * 0.25
    return Trace(t, values, sem, NS_PER_S, **kw)


def result_of(run_id: str = "2026-05-01_offline_ab12", **extra: Any) -> dict[str, Any]:
    base = {"schema_version": 1, "run_id": run_id, "status": "ok", "scenario": "offline"}
    return base | {"performance": {"samples_per_second": 10.5, "queries": 3}} | extra


QUERIES = QueryLog(
    np.array([T0 + 5, T0 + 1, T0 + 9]), np.array([T0 + 50, T0 + 7, T0 + 90]), np.array([1, 8, 2])
)


@pytest.fixture
def loadgen_dir(tmp_path: Path) -> Path:
    d = tmp_path / "loadgen"
    d.mkdir()
    (d / "mlperf_log_detail.txt").write_bytes(b':::MLLOG {"key": "power_begin"}\n\xff raw bytes\n')
    (d / "mlperf_log_summary.txt").write_text("Result is : VALID\n")
    (d / "mlperf_log_accuracy.json").write_text("[]")
    return d


def relative(paths: list[Path], root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in paths]


def test_writes_result_traces_and_queries_that_read_back(tmp_path: Path) -> None:
    out = tmp_path / "out"
    nan_trace = Trace(
        trace().t_ns, np.where(np.arange(20) == 3, np.nan, 5.0), Semantics.INSTANT, NS_PER_S
    )
    traces = {"gpu0": nan_trace, "ac": trace(uncertainty=np.full(20, 0.01))}
    result = result_of(power={"gpu0": {"coverage": None}})
    written = write_run_files(out, result, traces, QUERIES)
    run = out / "2026-05-01_offline_ab12"
    assert relative(written, run) == [
        "result.json",
        "traces/ac.csv",
        "traces/gpu0.csv",
        "queries.csv.gz",
    ]
    text = (run / "result.json").read_text(encoding="utf-8")
    assert json.loads(text) == result
    assert list(json.loads(text)) == list(result), "keys keep the contract's order"
    assert text.startswith('{\n  "schema_version": 1,\n  "run_id"') and text.endswith("}\n")
    for source, original in traces.items():
        back, problems = parse_trace_csv((run / "traces" / f"{source}.csv").read_text())
        assert not problems
        assert np.array_equal(back.t_ns, original.t_ns)
        assert np.array_equal(back.values, original.values, equal_nan=True)
        assert back.semantics is original.semantics
    packed = (run / "queries.csv.gz").read_bytes()
    assert gzip.decompress(packed).decode() == format_queries_csv(QUERIES)  # zcat reads it
    queries, problems = load_queries_csv(run / "queries.csv.gz")
    assert not problems
    assert np.array_equal(queries.issue_ns, QUERIES.issue_ns)
    assert np.array_equal(queries.complete_ns, QUERIES.complete_ns)
    assert np.array_equal(queries.samples, QUERIES.samples)
    assert not (run / "mlperf").exists()


def test_no_queries_no_queries_file(tmp_path: Path) -> None:
    written = write_run_files(tmp_path, result_of(), {}, None)
    assert relative(written, tmp_path) == ["2026-05-01_offline_ab12/result.json"]


def test_mlperf_layout_copies_loadgen_logs_and_writes_spl(
    tmp_path: Path, loadgen_dir: Path
) -> None:
    n = 12
    values = 300.0 + np.arange(n) * 0.25
    values[4] = np.nan
    ac = Trace(trace(n).t_ns, values, Semantics.INTERVAL_MEAN, NS_PER_S)
    result = result_of("run7", scenario="single-stream")
    written = write_run_files(tmp_path, result, {"ac": ac, "gpu0": trace(n)}, QUERIES, loadgen_dir)
    perf = tmp_path / "run7" / "mlperf" / "SingleStream" / "performance" / "run_1"
    assert set(written) >= {
        perf / "mlperf_log_detail.txt",
        perf / "mlperf_log_summary.txt",
        perf / "spl.txt",
    }
    assert not (perf / "mlperf_log_accuracy.json").exists()
    for name in ("mlperf_log_detail.txt", "mlperf_log_summary.txt"):
        assert (perf / name).read_bytes() == (loadgen_dir / name).read_bytes()
    lines = (perf / "spl.txt").read_text().splitlines()
    assert len(lines) == n
    for line in lines:
        m = SPL_LINE.match(line)
        assert m, line
        assert (m["mark"], m["v"], m["a"]) == ("run7_testing", "-1.000000", "-1.000000")
    assert lines[0].startswith("Time,06-15-2025 15:06:41.123,Watts,300.000000,")
    assert ",Watts,-1.000000," in lines[4]  # an invalid sample is PTD's "no reading"
    log = parse_ptd_log("\n".join(lines))
    assert not log.problems
    back = log.trace(mark="run7_testing")
    assert np.array_equal(back.t_ns, ac.t_ns)
    assert np.array_equal(back.values, ac.values, equal_nan=True)


@pytest.mark.parametrize(
    ("sources", "chosen"),
    [
        ({"ac2": 2.0, "ac1": 1.0, "gpu0": 9.0}, 1.0),
        ({"ac1": 1.0, "ac": 0.5}, 0.5),
        ({"gpu0": 9.0, "cpu": 8.0}, None),
    ],
)
def test_spl_comes_from_the_first_analyzer_source(
    tmp_path: Path, loadgen_dir: Path, sources: dict[str, float], chosen: float | None
) -> None:
    traces = {
        s: Trace(trace().t_ns, np.full(20, w), Semantics.INTERVAL_MEAN, NS_PER_S)
        for s, w in sources.items()
    }
    write_run_files(tmp_path, result_of("r"), traces, None, loadgen_dir)
    spl = tmp_path / "r" / "mlperf" / "Offline" / "performance" / "run_1" / "spl.txt"
    if chosen is None:
        assert not spl.exists()
        assert spl.with_name("mlperf_log_summary.txt").exists()
    else:
        assert f",Watts,{chosen:.6f}," in spl.read_text().splitlines()[0]


def test_an_energy_counter_is_never_written_as_spl(tmp_path: Path, loadgen_dir: Path) -> None:
    write_run_files(
        tmp_path, result_of("r"), {"ac": trace(sem=Semantics.COUNTER)}, None, loadgen_dir
    )
    assert not (
        tmp_path / "r" / "mlperf" / "Offline" / "performance" / "run_1" / "spl.txt"
    ).exists()


def test_without_loadgen_logs_there_is_no_mlperf_layout(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for loadgen in (empty, tmp_path / "missing"):
        write_run_files(tmp_path / "out", result_of("r"), {"ac": trace()}, None, loadgen)
        assert not (tmp_path / "out" / "r" / "mlperf").exists()


def test_mlperf_layout_needs_a_known_scenario(tmp_path: Path, loadgen_dir: Path) -> None:
    with pytest.raises(InputError, match="no scenario"):
        write_run_files(tmp_path, result_of("r", scenario=None), {}, None, loadgen_dir)
    with pytest.raises(InputError, match="unknown scenario 'batch'"):
        write_run_files(tmp_path, result_of("r", scenario="batch"), {}, None, loadgen_dir)


@pytest.mark.parametrize(
    ("run_id", "sources"),
    [
        ("../escape", {}),
        ("..", {}),
        ("a/b", {}),
        ("/abs", {}),
        (".hidden", {}),
        ("ok", {"../../escape": None}),
        ("ok", {"traces/x": None}),
        ("ok", {"": None}),
    ],
)
def test_names_cannot_escape_the_output_directory(
    tmp_path: Path, run_id: str, sources: dict[str, Any]
) -> None:
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    with pytest.raises(InputError, match=r"invalid (run id|source name)"):
        write_run_files(out, result_of(run_id), dict.fromkeys(sources, trace()), None)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_rewriting_replaces_files_and_leaves_no_temporaries(tmp_path: Path) -> None:
    write_run_files(tmp_path, result_of("r", status="ok"), {"ac": trace()}, None)
    write_run_files(tmp_path, result_of("r", status="degraded"), {"ac": trace(5)}, None)
    assert json.loads((tmp_path / "r" / "result.json").read_text())["status"] == "degraded"
    assert len((tmp_path / "r" / "traces" / "ac.csv").read_text().splitlines()) == 6
    assert list(tmp_path.rglob("*.tmp")) == []


def test_a_failed_write_keeps_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_run_files(tmp_path, result_of("r", status="ok"), {}, None)
    before = (tmp_path / "r" / "result.json").read_bytes()

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_module.os, "fsync", no_space)
    with pytest.raises(
        InputError, match=r"cannot write .*result\.json: No space left on device"
    ) as info:
        write_run_files(tmp_path, result_of("r", status="failed"), {}, None)
    assert "writable" in (info.value.hint or "")
    assert (tmp_path / "r" / "result.json").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["result.json"]


def test_files_get_the_umask_permissions_not_private_temp_ones(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        (path,) = write_run_files(tmp_path, result_of("r"), {}, None)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


def test_an_unwritable_output_directory_is_an_input_error(tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(InputError, match="cannot write"):
        write_run_files(blocker, result_of("r"), {}, None)


def test_a_result_with_nan_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not writable as JSON"):
        write_run_files(
            tmp_path, result_of("r", power={"ac": {"average_watts": float("nan")}}), {}, None
        )
    assert not (tmp_path / "r").exists()


def test_the_query_log_is_kept_compressed(tmp_path: Path) -> None:
    """A 60-s GPU run wrote a 37-MB queries.csv: the log is kept gzip-compressed."""
    n = 50_000
    issue = T0 + np.cumsum(np.full(n, 1_234_567, dtype=np.int64))
    log = QueryLog(issue, issue + 987_654 + np.arange(n) % 9_999, np.ones(n, dtype=np.int64))
    write_run_files(tmp_path, result_of(), {}, log)
    packed = tmp_path / "2026-05-01_offline_ab12" / "queries.csv.gz"
    assert not packed.with_suffix("").exists()
    assert packed.stat().st_size * 4 < len(format_queries_csv(log))  # 4.6x here, 7x Offline
    back, problems = load_queries_csv(packed)
    assert not problems and np.array_equal(back.complete_ns, log.complete_ns)
