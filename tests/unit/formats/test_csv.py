"""infergy's CSV contract (traces, query logs) and load_power_source's format detection."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from infergy.core.trace import QueryLog, Semantics, Trace
from infergy.errors import InputError
from infergy.formats import load_power_source
from infergy.formats.csv import (
    format_queries_csv,
    format_trace_csv,
    load_queries_csv,
    load_trace_csv,
    parse_queries_csv,
    parse_trace_csv,
)
from infergy.formats.ptd import format_sample_line

PTD_FIX = Path(__file__).resolve().parents[2] / "fixtures" / "formats" / "ptd"
T0 = 1_750_000_000_000_000_000
MS = 1_000_000


@pytest.mark.parametrize(
    ("header", "semantics"),
    [
        ("t_ns,watts_instant", Semantics.INSTANT),
        ("t_ns,watts_mean", Semantics.INTERVAL_MEAN),
        ("t_ns,joules", Semantics.COUNTER),
        (" T_NS , Watts_Mean ", Semantics.INTERVAL_MEAN),
    ],
)
def test_trace_headers(header: str, semantics: Semantics) -> None:
    trace, problems = parse_trace_csv(f"{header}\n{T0},1.5\n{T0 + 20 * MS},2.5\n")
    assert problems == []
    assert trace.semantics is semantics
    assert trace.t_ns.tolist() == [T0, T0 + 20 * MS]
    assert trace.values.tolist() == [1.5, 2.5]
    assert trace.uncertainty is None
    assert trace.nominal_period_ns == 20 * MS  # the median spacing


def test_uncertainty_column_and_explicit_period() -> None:
    text = f"t_ns,watts_mean,uncertainty\n{T0},100.0,0.006\n{T0 + MS},101.0,\n"
    trace, problems = parse_trace_csv(text, nominal_period_ns=1_000 * MS)
    assert problems == []
    assert trace.nominal_period_ns == 1_000 * MS
    assert trace.uncertainty is not None
    assert trace.uncertainty[0] == 0.006 and np.isnan(trace.uncertainty[1])


@pytest.mark.parametrize(
    "header", ["t_ns,watts", "time,watts_mean", "t_ns,watts_mean,uncertainty,extra", "t_ns"]
)
def test_unknown_trace_header(header: str) -> None:
    with pytest.raises(InputError, match=f"unknown trace CSV header {header!r}") as err:
        parse_trace_csv(f"{header}\n1,2\n")
    assert err.value.hint is not None
    for accepted in ("t_ns,watts_instant", "t_ns,watts_mean", "t_ns,joules", "uncertainty"):
        assert accepted in err.value.hint


def test_dirty_trace_csv() -> None:
    rows = [
        "\ufeff# recorded by hand",  # 1 a BOM, then a comment before the header
        "t_ns,watts_instant",  # 2
        f"{T0},10.0",  # 3
        f"{T0 + 1 * MS},",  # 4 empty value: invalid sample
        f"{T0 + 2 * MS},nan",  # 5
        f"{T0 + 3 * MS},NaN  ",  # 6 trailing whitespace
        "",  # 7 blank
        f"{T0 + 4 * MS},12.5,9",  # 8 a column too many
        "garbage\x00\ufffd",  # 9
        f"{T0 + 5 * MS}.0,13.0",  # 10 t_ns not an integer
        f"{T0 + 6 * MS},1e400",  # 11 overflows to inf: kept, invalid
        f"{T0 + 7 * MS},14.0",  # 12
        f"{T0 + 7 * MS},15.0",  # 13 the same t_ns again: the last row wins
        f"{T0 + MS // 2},11.0",  # 14 out of order
    ]
    trace, problems = parse_trace_csv("\r\n".join(rows) + "\r\n")
    assert problems[0] == (f"3 unparseable lines skipped (first at line 8: '{T0 + 4 * MS},12.5,9')")
    assert problems[1] == (
        "1 sample at an already seen timestamp (first at line 13); "
        "the last one at each timestamp is used"
    )
    assert problems[2] == "timestamps go backwards at 1 place; sorted"
    assert trace.t_ns.tolist() == [T0 + k * MS // 2 for k in (0, 1, 2, 4, 6, 12, 14)]
    v = trace.values
    assert v[0] == 10.0 and v[1] == 11.0 and v[-1] == 15.0
    assert np.isnan(v[2:5]).all() and np.isinf(v[5])
    assert trace.valid.tolist() == [True, True, False, False, False, False, True]


def test_bom_crlf_clean_file_takes_the_fast_path() -> None:
    text = "\ufefft_ns,joules\r\n" + "".join(f"{T0 + k * MS},{k * 0.5}\r\n" for k in range(5))
    trace, problems = parse_trace_csv(text + "\r\n\r\n")
    assert problems == [] and trace.semantics is Semantics.COUNTER
    assert trace.values.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_empty_trace_csv() -> None:
    trace, problems = parse_trace_csv("t_ns,watts_mean\n")
    assert len(trace) == 0 and problems == ["no samples found"]
    assert trace.nominal_period_ns == 1_000_000_000


def test_queries_csv() -> None:
    text = "\n".join(
        [
            "issue_ns,complete_ns,samples",
            f"{T0},{T0 + 5 * MS},1",
            f"{T0 + MS},{T0 + 3 * MS},8",
            f"{T0 + 2 * MS},{T0 + MS},1",  # completes before it is issued
            f"{T0 + 3 * MS},{T0 + 4 * MS},0",  # no samples
            f"{T0 + 4 * MS},{T0 + 9 * MS}",  # a field short
            "",
        ]
    )
    q, problems = parse_queries_csv(text)
    assert q.issue_ns.tolist() == [T0, T0 + MS]
    assert q.samples.tolist() == [1, 8] and q.total_samples == 9
    assert problems == [
        f"1 unparseable line skipped (first at line 6: '{T0 + 4 * MS},{T0 + 9 * MS}')",
        "2 queries skipped: completion before issue or fewer than one sample (first at line 4)",
    ]
    with pytest.raises(InputError, match="unknown query log CSV header 'issue,complete'") as err:
        parse_queries_csv("issue,complete\n1,2\n")
    assert err.value.hint == "accepted: issue_ns,complete_ns,samples"
    empty, problems = parse_queries_csv("issue_ns,complete_ns,samples\n")
    assert len(empty) == 0 and problems == ["no queries found"]


# --- writers: exact round trips --------------------------------------------------------------

finite_or_nan = st.floats(allow_infinity=False) | st.just(float("nan"))


@st.composite
def traces(draw: st.DrawFn) -> Trace:
    n = draw(st.integers(min_value=0, max_value=40))
    steps = draw(hnp.arrays(np.int64, n, elements=st.integers(1, 10**12)))
    t_ns = draw(st.integers(-(10**17), 10**18)) + np.cumsum(steps)
    values = draw(hnp.arrays(np.float64, n, elements=finite_or_nan))
    u = draw(st.none() | hnp.arrays(np.float64, n, elements=st.floats(0, 1) | st.just(np.nan)))
    sem = draw(st.sampled_from(list(Semantics)))
    return Trace(t_ns, values, sem, draw(st.integers(1, 10**10)), u)


@given(traces())
def test_trace_csv_round_trip(trace: Trace) -> None:
    back, problems = parse_trace_csv(format_trace_csv(trace), trace.nominal_period_ns)
    assert problems == ([] if len(trace) else ["no samples found"])
    assert back.semantics is trace.semantics
    assert np.array_equal(back.t_ns, trace.t_ns)
    assert np.array_equal(back.values, trace.values, equal_nan=True)
    if trace.uncertainty is None:
        assert back.uncertainty is None
    else:
        assert back.uncertainty is not None
        assert np.array_equal(back.uncertainty, trace.uncertainty, equal_nan=True)


@given(
    st.lists(
        st.tuples(st.integers(-(2**62), 2**62), st.integers(0, 2**60), st.integers(1, 2**62)),
        max_size=30,
    )
)
def test_queries_csv_round_trip(rows: list[tuple[int, int, int]]) -> None:
    issue = [i for i, _, _ in rows]
    queries = QueryLog(issue, [i + d for i, d, _ in rows], [s for _, _, s in rows])
    back, problems = parse_queries_csv(format_queries_csv(queries))
    assert problems == ([] if rows else ["no queries found"])
    for name in ("issue_ns", "complete_ns", "samples"):
        assert np.array_equal(getattr(back, name), getattr(queries, name))


def test_writer_output_is_plain_csv() -> None:
    trace = Trace([T0, T0 + MS], [1.0, np.nan], Semantics.INSTANT, MS, [0.01, 0.02])
    assert format_trace_csv(trace) == (
        f"t_ns,watts_instant,uncertainty\n{T0},1.0,0.01\n{T0 + MS},nan,0.02\n"
    )
    q = QueryLog([5], [7], [8])
    assert format_queries_csv(q) == "issue_ns,complete_ns,samples\n5,7,8\n"


# --- speed -----------------------------------------------------------------------------------


def big_csv(n: int) -> tuple[str, np.ndarray, np.ndarray]:
    t = T0 + np.arange(n, dtype=np.int64) * 20 * MS
    v = 100.0 + 50.0 * np.sin(np.arange(n) / 100.0)
    text = format_trace_csv(Trace(t, v, Semantics.INTERVAL_MEAN, 20 * MS))
    return text, t, v


@pytest.mark.slow
def test_large_trace_csv_parses_in_seconds() -> None:
    text, t, v = big_csv(1_500_000)
    start = time.perf_counter()
    trace, problems = parse_trace_csv(text)
    clean_s = time.perf_counter() - start
    assert problems == [] and np.array_equal(trace.t_ns, t) and np.array_equal(trace.values, v)
    lines = text.split("\n")
    lines[10], lines[700_000] = "garbage", lines[700_000].split(",")[0] + ","
    start = time.perf_counter()
    trace, problems = parse_trace_csv("\n".join(lines))
    dirty_s = time.perf_counter() - start
    assert len(trace) == 1_499_999 and problems[0].startswith("1 unparseable line skipped")
    assert int(np.count_nonzero(~trace.valid)) == 1
    assert clean_s < 5.0 and dirty_s < 10.0, (clean_s, dirty_s)


# --- loaders and format detection -------------------------------------------------------------


def test_load_csv_files(tmp_path: Path) -> None:
    path = tmp_path / "gpu0.csv"
    path.write_text(f"t_ns,joules\n{T0},1.0\n{T0 + MS},2.0\n")
    trace, problems = load_trace_csv(path)
    assert problems == [] and trace.semantics is Semantics.COUNTER
    with pytest.raises(InputError, match=r"gpu0\.csv: unknown query log CSV header"):
        load_queries_csv(path)
    with pytest.raises(InputError, match="no such file") as err:
        load_trace_csv(tmp_path / "missing.csv")
    assert err.value.hint


def test_gzipped_csv_files_read_like_plain_ones(tmp_path: Path) -> None:
    text = f"issue_ns,complete_ns,samples\n{T0},{T0 + MS},8\n"
    plain, packed = tmp_path / "queries.csv", tmp_path / "queries.csv.gz"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode()))
    a, b = load_queries_csv(plain), load_queries_csv(packed)
    assert a[1] == b[1] == [] and np.array_equal(a[0].complete_ns, b[0].complete_ns)
    trace = tmp_path / "gpu0.csv.gz"
    trace.write_bytes(gzip.compress(f"t_ns,joules\n{T0},1.0\n{T0 + MS},2.0\n".encode()))
    assert len(load_trace_csv(trace)[0]) == 2
    packed.write_bytes(gzip.compress(text.encode())[:20])  # cut short
    with pytest.raises(InputError, match="broken gzip data") as err:
        load_queries_csv(packed)
    assert err.value.hint


def test_load_power_source_detects_ptd_and_csv(tmp_path: Path) -> None:
    ptd = load_power_source(PTD_FIX / "orin_offline_ptd_logs_excerpt.txt")
    assert ptd.format == "ptd" and ptd.ptd is not None
    assert ptd.trace.semantics is Semantics.INTERVAL_MEAN and len(ptd.trace) == 43
    assert ptd.problems == []
    dirty = load_power_source(PTD_FIX / "power_dev_ptd_logfile.txt")
    assert dirty.problems and dirty.problems[0].startswith("1 unparseable line skipped")
    csv_path = tmp_path / "ac.csv"
    csv_path.write_text(f"\ufeff\nt_ns,watts_mean\n{T0},100.0\n{T0 + MS},x\n")
    csv = load_power_source(csv_path)
    assert csv.format == "csv" and csv.ptd is None and len(csv.trace) == 1
    assert csv.problems == [f"1 unparseable line skipped (first at line 4: '{T0 + MS},x')"]


def test_load_power_source_refuses(tmp_path: Path) -> None:
    cases = {
        "unknown.txt": ("hello,world\n1,2\n", "unknown power source format"),
        "empty.txt": ("", "unknown power source format"),
        "bad_header.csv": ("t_ns,volts\n1,2\n", "unknown trace CSV header 't_ns,volts'"),
        "no_valid.txt": (
            format_sample_line(T0, -1.0, -1.0, -1.0, -1.0) + "\n",
            "no valid power samples in this ptd file",
        ),
        "no_rows.csv": ("t_ns,watts_mean\n", "no valid power samples in this csv file"),
    }
    for name, (text, says) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(InputError, match=says) as err:
            load_power_source(path)
        assert str(err.value).startswith(str(path)) and err.value.hint, name
    with pytest.raises(InputError, match="cannot read power source file"):
        load_power_source(tmp_path / "missing.txt")


def test_a_simulated_note_survives_a_round_trip_and_is_read_by_load_power_source(
    tmp_path: Path,
) -> None:
    trace = Trace(
        np.array([T0, T0 + 100 * MS]), np.array([10.0, 11.0]), Semantics.INSTANT, 100 * MS
    )
    text = format_trace_csv(trace, note="SIMULATED source sim of run r1: not a measurement")
    assert text.startswith(
        "# SIMULATED source sim of run r1: not a measurement\nt_ns,watts_instant\n"
    )
    back, problems = parse_trace_csv(text)
    assert problems == [] and np.array_equal(back.values, trace.values)
    (tmp_path / "sim.csv").write_text(text)
    (tmp_path / "real.csv").write_text(format_trace_csv(trace, note="measured on rack 4"))
    sim, real = load_power_source(tmp_path / "sim.csv"), load_power_source(tmp_path / "real.csv")
    assert sim.simulated and sim.simulated_note is not None and "run r1" in sim.simulated_note
    assert not real.simulated and real.simulated_note is None
