"""PTDaemon formats against real recorded lines (tests/fixtures/formats/README.md says whence)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infergy.core.trace import Semantics
from infergy.errors import InputError
from infergy.formats.ptd import (
    format_console_line,
    format_multichannel_sample_line,
    format_ptd_time,
    format_sample_line,
    format_status_line,
    load_ptd_log,
    looks_like_ptd,
    parse_ptd_log,
    parse_ptd_time,
)

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "formats" / "ptd"
SPL = FIX / "orin_offline_spl_head.txt"
LOGFILE = FIX / "power_dev_ptd_logfile.txt"
CONSOLE = FIX / "orin_offline_ptd_logs_excerpt.txt"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns(text: str) -> int:
    """Ground truth from the standard library, independent of the parser under test."""
    dt = datetime.strptime(text, "%m-%d-%Y %H:%M:%S.%f").replace(tzinfo=UTC)
    return (dt - EPOCH) // timedelta(microseconds=1) * 1000


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# --- timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["08-14-2023 18:41:36.219", "01-01-1970 00:00:00.000", "02-29-2024 23:59:59.999"],
)
def test_parse_ptd_time_matches_the_standard_library(text: str) -> None:
    assert parse_ptd_time(text) == ns(text)
    assert format_ptd_time(ns(text)) == text


def test_parse_ptd_time_fraction_digits_and_whitespace() -> None:
    assert parse_ptd_time(" 08-14-2023 18:41:36 ") == ns("08-14-2023 18:41:36.000")
    assert parse_ptd_time("08-14-2023 18:41:36.5") == ns("08-14-2023 18:41:36.500")
    assert parse_ptd_time("08-14-2023 18:41:36.123456789") == ns("08-14-2023 18:41:36.123456") + 789


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("28-12-2020 15:21:14.682", "day first"),  # power-dev's README example
        ("02-29-2023 00:00:00.000", "invalid"),
        ("08-14-2023 24:00:00.000", "invalid"),
        ("2023-08-14 18:41:36.219", "not a PTD timestamp"),
        ("08-14-2023T18:41:36.219", "not a PTD timestamp"),
        ("", "not a PTD timestamp"),
    ],
)
def test_parse_ptd_time_rejects(text: str, says: str) -> None:
    with pytest.raises(InputError, match=says):
        parse_ptd_time(text)


def test_format_ptd_time_truncates_sub_ms_and_floors_before_1970() -> None:
    t = ns("08-14-2023 18:41:36.219")
    assert format_ptd_time(t + 999_999) == "08-14-2023 18:41:36.219"
    assert format_ptd_time(-1) == "12-31-1969 23:59:59.999"
    with pytest.raises(InputError):
        format_ptd_time(10**21)  # year 33658


@given(
    st.integers(min_value=ns("01-01-0001 00:00:00.000"), max_value=ns("12-31-9999 23:59:59.999"))
)
def test_ptd_time_round_trip(t_ns: int) -> None:
    assert parse_ptd_time(format_ptd_time(t_ns)) == t_ns - t_ns % 1_000_000


# --- real files -------------------------------------------------------------------------------


def test_spl_txt_from_a_real_submission() -> None:
    log = load_ptd_log(SPL)
    assert len(log) == 40
    assert log.problems == [] and log.status == [] and log.ignored_lines == 0
    assert log.marks_present() == ["2023-08-14_11-29-10_testing"]
    assert log.t_ns[0] == ns("08-14-2023 18:41:11.219")
    assert log.t_ns[-1] == ns("08-14-2023 18:41:50.220")
    assert (log.watts[0], log.volts[0], log.amps[0], log.pf[0]) == (5.39, 240.43, 0.10859, 0.2064)
    trace = log.trace()
    assert trace.semantics is Semantics.INTERVAL_MEAN
    assert trace.nominal_period_ns == 1_000_000_000  # 999..1001 ms spacing, median rounded to ms
    assert np.array_equal(trace.values, log.watts)


def test_ptd_l_logfile_from_power_dev() -> None:
    log = load_ptd_log(LOGFILE)
    assert [(s.level, s.text) for s in log.status] == [
        ("NOTICE", "Analyzer identity response of 32 bytes: YOKOGAWA,WT310,C2PH13047V,F1.03"),
        ("ERROR", "Bad volts reading nan from WT310"),
    ]
    assert log.ignored_lines == 1  # "Buffer was 1.000E+00;1;300.0E+00;1"
    assert len(log) == 7
    assert log.marks_present() == ["2021-01-22_15-05-02_loadgen_ranging", "notset"]
    # the sum channel of a multichannel line keeps its V/A/PF of -1 as written
    assert log.watts[4] == 272.93 and log.volts[4] == -1.0 and log.pf[4] == -1.0
    assert sorted(log.channels) == ["Ch1", "Ch2", "Ch3"]
    assert np.isnan(log.channels["Ch1"].watts[0])  # single-channel lines have no Ch1
    assert log.channels["Ch1"].watts[4] == 91.06 and log.channels["Ch3"].amps[4] == 0.8020
    assert log.channels["Ch2"].volts[6] == 120.83
    # the line power-dev's own test rejects ("Expected 'Watts', got 'Watts1'") is line 11
    assert log.problems[0].startswith("1 unparseable line skipped (first at line 11: 'Time,11-13")
    assert "Watts1" in log.problems[0]
    assert "3 samples at an already seen timestamp (first at line 6)" in log.problems[1]
    assert "backwards at 1 place" in log.problems[2]


def test_ptd_trace_selects_channel_and_mark() -> None:
    log = load_ptd_log(LOGFILE)
    whole = log.trace()
    assert whole.t_ns.tolist() == [
        ns("11-13-2020 22:38:59.240"),
        ns("11-13-2020 22:39:00.239"),
        ns("01-22-2021 15:05:14.313"),
        ns("01-22-2021 15:05:15.322"),
    ]
    assert whole.values.tolist() == [272.93, 275.63, 22.97, 25.65]
    ch2 = log.trace(channel="Ch2", nominal_period_ns=1_000_000_000)
    assert ch2.values.tolist()[:2] == [90.97, 91.87] and ch2.nominal_period_ns == 1_000_000_000
    assert np.isnan(ch2.values[2:]).all()  # the ranging lines have no channels
    ranging = log.trace(mark="2021-01-22_15-05-02_loadgen_ranging")
    assert ranging.values.tolist() == [22.97, 25.65]
    with pytest.raises(InputError, match="no channel 'Ch9'") as err:
        log.trace(channel="Ch9")
    assert err.value.hint == "channels present: Ch1, Ch2, Ch3"
    with pytest.raises(InputError, match="no samples with mark 'nope'"):
        log.trace(mark="nope")


def test_console_capture_ptd_logs_txt() -> None:
    log = load_ptd_log(CONSOLE)
    assert log.problems == []
    assert log.ignored_lines == 17  # 11 banner lines, Redirecting, CRC, 4 x "Buffer was"
    assert len(log) == 43  # 4 RL chunks: each 1 echoed + 10 or 11 bare lines (one cut short)
    assert log.marks_present() == ["notset"]
    # the echo "Response to client sent: Time,..." carries a sample of its own
    i = int(np.flatnonzero(log.t_ns == ns("08-14-2023 18:30:00.819"))[0])
    assert log.watts[i] == 5.26
    assert int(np.count_nonzero(log.watts == -1.0)) == 7
    assert int(log.trace().valid.sum()) == 36
    levels = [s.level for s in log.status]
    assert (levels.count("ERROR"), levels.count("WARNING")) == (7, 3)
    first = log.status[0]
    assert first.t_ns == ns("08-14-2023 18:29:10.401") and first.level == "INFO"
    assert first.text == "Attempting to connect to measurement device type 52..."
    texts = [s.text for s in log.status]
    assert "Go with mark '2023-08-14_11-29-10_ranging'" in texts
    assert "Completed test" in texts
    assert "Bad watts reading nan from WT310" in texts  # the "ERROR: " prefix became the level


# --- dirty input built from real lines -------------------------------------------------------


def sample(t: str, watts: str, mark: str = "m") -> str:
    return f"Time,{t},Watts,{watts},Volts,240.430000,Amps,0.108590,PF,0.206400,Mark,{mark}"


GOOD = sample("08-14-2023 18:41:11.219", "5.390000")


def test_dirty_file_is_parsed_line_by_line(tmp_path: Path) -> None:
    lines = [
        GOOD,  # 1
        "",  # 2 blank
        GOOD.replace("11.219", "12.219")[:60],  # 3 truncated mid-value
        sample("08-14-2023 18:41:13.219", "-1.000000"),  # 4 bad reading
        sample("08-14-2023 18:41:14.219", "-2.000000"),  # 5 missed sample
        sample("08-14-2023 18:41:15.219", "INF"),  # 6 overrange leaked as text
        sample("08-14-2023 18:41:16.219", "NAN"),  # 7 no data
        sample("08-14-2023 18:41:17.219", "9.91E+37"),  # 8 no data as a number
        sample("08-14-2023 18:41:18.219", "-27.100000"),  # 9 autorange garbage (power-dev#253)
        "Time,14-08-2023 18:41:19.219,Watts,7.0,Volts,1,Amps,1,PF,1",  # 10 day first
        GOOD.replace(",PF,0.206400", ""),  # 11 a field pair missing
        "Time,08-14-2023 18:41:20.219,Wa\x00\x00tts,\xff\xfe",  # 12 garbage bytes
        "Time,08-14-2023 18:41:21.219,WARNING,Uncertainty 1.05% above 1.00% limit",  # 13 status
        sample("08-14-2023 18:41:22.219", "24.300000"),  # 14
        "   ",  # 15 whitespace only
    ]
    raw = ("\ufeff" + "  \r\n".join(lines) + "\r\n").encode()
    raw = raw.replace(b"\xc3\xbf\xc3\xbe", b"\xff\xfe")  # make those two real invalid bytes
    path = tmp_path / "dirty.txt"
    path.write_bytes(raw)
    log = load_ptd_log(path)
    assert len(log) == 8
    assert log.problems[0].startswith("4 unparseable lines skipped (first at line 3: ")
    assert "day-first" in log.problems[1]
    assert [s.level for s in log.status] == ["WARNING"]
    trace = log.trace()
    assert trace.values[0] == 5.39 and trace.values[-1] == 24.3
    assert np.isnan(trace.values[1:-1]).all()  # -1, -2, INF, NAN, 9.91E+37 and -27.1 are gaps
    assert log.watts[1:3].tolist() == [-1.0, -2.0]  # raw values are kept as written


def test_sample_line_variants() -> None:
    t = "08-14-2020 12:52:54.153"
    text = "\n".join(
        [
            # console without -l: no "Time," prefix (CPU2017 tutorial, ptd.md 1.4)
            f"{t},Watts,23.310000,Volts,120.000000,Amps,0.194250,PF,1.000000,Mark,_002_cal_rc_",
            # raw RL,*,* reply: unlabelled channel groups (as power-dev's spl.txt rewrite implies)
            "Time,08-14-2020 12:52:55.153,Watts,3.000000,Volts,-1.000000,Amps,-1.000000,"
            "PF,-1.000000,Watts,1.000000,Volts,1.0,Amps,1.0,PF,1.0,Watts,2.000000,Volts,2.0,"
            "Amps,2.0,PF,2.0",
            # spl.txt of a multichannel analyzer: the mark after the sum, then Ch<n> groups
            "Time,08-14-2020 12:52:56.153,Watts,3.000000,Volts,-1.000000,Amps,-1.000000,"
            "PF,-1.000000,Mark,s_testing,Ch1,Watts,1.5,Volts,1.0,Amps,1.0,PF,1.0,"
            "Ch2,Watts,1.5,Volts,2.0,Amps,2.0,PF,2.0",
            # power-dev's multi-analyzer merge
            "Time,08-14-2020 12:52:57.153,Watts,30.000000,Volts,-1.000000,Amps,-1.000000,"
            "PF,-1.000000,Mark,s_testing,Analyzer1,Time,08-14-2020 12:52:57.100,Watts,10.0,"
            "Volts,1,Amps,1,PF,1,Mark,s_testing,Analyzer2,Time,08-14-2020 12:52:57.370,"
            "Watts,20.0,Volts,1,Amps,1,PF,1,Mark,s_testing",
            "Time,08-14-2020 12:52:58.153,Watts,4.0,Volts,1,Amps,1,PF,1,",  # trailing comma
        ]
    )
    log = parse_ptd_log(text)
    assert log.problems == []
    assert log.marks == ["_002_cal_rc_", "notset", "s_testing", "s_testing", "notset"]
    assert log.watts.tolist() == [23.31, 3.0, 3.0, 30.0, 4.0]
    assert log.channels["Ch1"].watts[1:3].tolist() == [1.0, 1.5]
    assert log.channels["Ch2"].volts[1:3].tolist() == [2.0, 2.0]
    assert log.channels["Analyzer2"].watts[3] == 20.0


def test_empty_and_foreign_text() -> None:
    empty = parse_ptd_log("")
    assert len(empty) == 0 and empty.problems == ["no sample lines found"]
    assert len(empty.trace()) == 0
    foreign = parse_ptd_log("t_ns,watts_mean\n1,2\n")
    assert foreign.ignored_lines == 2 and len(foreign) == 0


# --- writers ---------------------------------------------------------------------------------


def test_writers_reproduce_real_lines() -> None:
    spl, logfile, console = lines_of(SPL), lines_of(LOGFILE), lines_of(CONSOLE)
    t = ns("08-14-2023 18:41:11.219")
    assert format_sample_line(t, 5.39, 240.43, 0.10859, 0.2064, mark=spl[0][-27:]) == spl[0]
    rl = format_sample_line(ns("08-14-2023 18:29:38.819"), 5.21, 240.43, 0.10512, 0.2062)
    assert rl in console
    channels = {
        1: (91.06, 120.95, 0.8321, 0.9389),
        2: (90.97, 120.83, 0.802, 0.9388),
        3: (90.9, 120.75, 0.802, 0.9387),
    }
    t_mc = ns("11-13-2020 22:38:59.240")
    assert format_multichannel_sample_line(t_mc, channels, mark="notset") == logfile[7]
    listed = format_multichannel_sample_line(t_mc, list(channels.values()), mark="notset")
    assert listed == logfile[7]
    bad = format_multichannel_sample_line(t_mc, [(-1.0, 1.0, -1.0, -1.0), (2.0, 1.0, 1.0, 1.0)])
    assert bad.startswith(f"Time,{format_ptd_time(t_mc)},Watts,-1.000000,Volts,-1.000000")
    t_st = ns("11-07-2020 17:54:49.071")
    assert format_status_line(t_st, "ERROR", "Bad volts reading nan from WT310") == logfile[1]
    assert format_console_line(ns("08-14-2023 18:40:57.508"), "Completed test") in console
    with pytest.raises(InputError, match="unknown PTD status level"):
        format_status_line(t_st, "INFO", "x")


ms_times = st.integers(min_value=0, max_value=4_102_444_800_000).map(lambda ms: ms * 1_000_000)
micro = st.integers(min_value=-(10**12), max_value=10**12).map(lambda k: k / 1_000_000)
marks = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-:.", min_size=1, max_size=40)


@given(ms_times, micro, micro, micro, micro, st.none() | marks)
def test_sample_line_round_trip(
    t_ns: int, w: float, v: float, a: float, pf: float, mark: str | None
) -> None:
    log = parse_ptd_log(format_sample_line(t_ns, w, v, a, pf, mark=mark))
    assert log.problems == []
    assert log.t_ns.tolist() == [t_ns]
    assert (log.watts[0], log.volts[0], log.amps[0], log.pf[0]) == (w, v, a, pf)
    assert log.marks == [mark or "notset"]


@given(ms_times, st.lists(st.tuples(micro, micro, micro, micro), min_size=1, max_size=4), marks)
def test_multichannel_line_round_trip(
    t_ns: int, channels: list[tuple[float, float, float, float]], mark: str
) -> None:
    log = parse_ptd_log(format_multichannel_sample_line(t_ns, channels, mark=mark))
    assert log.problems == [] and log.marks == [mark]
    for n, reading in enumerate(channels, start=1):
        ch = log.channels[f"Ch{n}"]
        assert (ch.watts[0], ch.volts[0], ch.amps[0], ch.pf[0]) == reading


# --- detection and loading -------------------------------------------------------------------


def test_looks_like_ptd() -> None:
    for path in (SPL, LOGFILE, CONSOLE):
        assert looks_like_ptd(path.read_text()[:4096])
    assert looks_like_ptd("\ufeff" + lines_of(SPL)[0])
    assert looks_like_ptd("08-14-2023 18:52:33.029: Shutting connection down...")
    assert not looks_like_ptd("t_ns,watts_mean\n1750000000000000000,100.0\n")
    assert not looks_like_ptd(':::MLLOG {"key": "power_begin", "value": "08-14-2023 18:41:36.504"}')
    assert not looks_like_ptd("")


def test_load_ptd_log_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot read PTD log .*: no such file") as err:
        load_ptd_log(tmp_path / "missing.txt")
    assert err.value.hint
    with pytest.raises(InputError, match="it is a directory"):
        load_ptd_log(tmp_path)


def test_a_simulated_notice_marks_the_whole_log() -> None:
    """The example recording's first line, and the bridge's line in front of an emulator."""
    first = "Time,11-23-2026 09:31:10.091,NOTICE,SIMULATED analyzer (infergy examples): not a measurement"
    sample = "Time,11-23-2026 09:31:10.991,Watts,295.5,Volts,230.0,Amps,1.3,PF,0.96,Mark,x"
    log = parse_ptd_log(f"{first}\n{sample}\n")
    assert log.simulated_note == "SIMULATED analyzer (infergy examples): not a measurement"
    assert parse_ptd_log(sample + "\n").simulated_note is None
    warning = "Time,11-23-2026 09:31:10.091,WARNING,SIMULATED? no: a warning line is not a notice"
    assert parse_ptd_log(f"{warning}\n{sample}\n").simulated_note is None
