"""`infergy analyze` applies every rule of MLPerf's power checker to published MLPerf runs.

The figures are checked against the numbers the checker computes (research notes in
notes/mlperf_power_checker.md, worked on these very files) and against
``examples/mlperf-real/check_power_metric.py``, an independent stdlib recomputation.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from infergy.cli.app import main
from infergy.formats.ptd_time import parse_ptd_time

ROOT = Path(__file__).resolve().parents[3]
REAL = ROOT / "examples" / "mlperf-real"
SS, OFF = REAL / "single-stream", REAL / "offline"
FIXTURES = ROOT / "tests" / "fixtures" / "formats" / "loadgen"

# The published SingleStream run: 600.000-s window, 600 samples, mean 231.1185 W.
SS_QUERIES = 4_742_678
SS_MJ = 29.2389869184  # published Power_Result
SS_EARLY_STOPPING_MS_NS = 128_968  # early_stopping_latency_ms in its log


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    for var in ("INFERGY_CONFIG", "STATE_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("COLUMNS", "200")


def analyze_json(capsys, *args: str) -> dict:
    rc = main(["analyze", *args, "--json", "--no-store"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def reference():
    """The stdlib recomputation shipped with the examples (reads every Time line as written)."""
    spec = importlib.util.spec_from_file_location("check", REAL / "check_power_metric.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_multistream_inferred_from_singlestream_is_8x_the_energy_per_query(capsys):
    """The checker's x8 rule: samples are not multiplied, the mJ per (8-sample) query is."""
    r = analyze_json(capsys, "--power", f"ac={SS / 'spl.txt'}", "--loadgen-log", str(SS),
                     "--scenario", "multi-stream")  # fmt: skip
    assert r["scenario"] == "multi-stream"
    assert r["performance"]["samples"] == SS_QUERIES  # was 8 x: 37,941,424
    assert r["performance"]["queries"] == SS_QUERIES
    eff = r["efficiency"]["ac"]
    assert eff["millijoules_per_query_mlperf"] == pytest.approx(8 * SS_MJ, rel=1e-10)
    assert eff["millijoules_per_query_mlperf"] == pytest.approx(233.9118953468905, rel=1e-12)
    # the same energy per sample as the SingleStream run: samples/J unchanged
    assert eff["samples_per_joule_mlperf"] == pytest.approx(1000 / SS_MJ, rel=1e-10)
    assert eff["joules_per_sample"] == pytest.approx(eff["joules_per_query"] / 8, rel=1e-12)
    m = r["mlperf"]
    assert m["inferred"] is True and m["run_scenario"] == "SingleStream"
    assert m["scenario"] == "MultiStream" and m["power_unit"] == "millijoules"
    assert m["performance"] == pytest.approx(8 * SS_EARLY_STOPPING_MS_NS / 1e6)  # 1.031744 ms
    assert any("inferred from a SingleStream run" in p for p in r["problems"])
    assert not any("overrides" in p for p in r["problems"])


def test_offline_efficiency_is_loadgen_s_own_throughput_over_mlperf_s_mean(capsys):
    r = analyze_json(capsys, "--power", f"ac={OFF / 'spl.txt'}", "--loadgen-log", str(OFF))
    mean_w = r["power"]["ac"]["mlperf_average_watts"]
    assert mean_w == pytest.approx(398.3299847793, rel=1e-10)
    # the checker: result_samples_per_second (as logged, 168720) / the mean
    assert r["efficiency"]["ac"]["samples_per_joule_mlperf"] == pytest.approx(
        168720 / 398.32998477930016, rel=1e-12
    )
    assert r["mlperf"]["performance"] == 168720 and r["mlperf"]["power_unit"] == "Watts"
    perf = r["performance"]
    # one Offline query of every sample LoadGen issued (generated_samples_per_query), not
    # round(168720 x 657.185 s) = 110,880,253
    assert perf["queries"] == 1 and perf["samples"] == 110_880_000
    eff = r["efficiency"]["ac"]
    energy = r["power"]["ac"]["energy_joules"]
    assert eff["joules_per_query"] == pytest.approx(energy)  # the one query: the whole run
    assert eff["joules_per_sample"] == pytest.approx(energy / 110_880_000, rel=1e-12)


def test_singlestream_reports_the_checker_s_samples_per_joule(capsys):
    r = analyze_json(capsys, "--power", f"ac={SS / 'spl.txt'}", "--loadgen-log", str(SS))
    eff = r["efficiency"]["ac"]
    assert eff["millijoules_per_query_mlperf"] == pytest.approx(SS_MJ, rel=1e-10)
    assert eff["samples_per_joule_mlperf"] == pytest.approx(1000 / SS_MJ, rel=1e-10)
    assert r["mlperf"]["performance"] == pytest.approx(0.120438)  # early_stopping_latency_ss
    assert r["mlperf"]["validity"] == "VALID" and r["mlperf"]["submittable_duration"] is True


def test_inferred_offline_from_singlestream_uses_qps_without_loadgen_overhead(capsys):
    r = analyze_json(capsys, "--power", f"ac={SS / 'spl.txt'}", "--loadgen-log", str(SS),
                     "--scenario", "offline")  # fmt: skip
    mean_w = r["power"]["ac"]["mlperf_average_watts"]
    assert r["efficiency"]["ac"]["samples_per_joule_mlperf"] == pytest.approx(8406.82 / mean_w)
    assert r["efficiency"]["ac"]["millijoules_per_query_mlperf"] is None
    assert r["mlperf"]["power_unit"] == "Watts" and r["mlperf"]["inferred"] is True


def test_a_pair_mlperf_does_not_infer_has_no_mlperf_result(capsys):
    r = analyze_json(capsys, "--power", f"ac={OFF / 'spl.txt'}", "--loadgen-log", str(OFF),
                     "--scenario", "single-stream")  # fmt: skip
    assert r["efficiency"]["ac"]["millijoules_per_query_mlperf"] is None
    assert r["efficiency"]["ac"]["samples_per_joule_mlperf"] is None
    assert any("does not infer SingleStream from a Offline run" in p for p in r["problems"])


def test_mlperf_s_mean_ignores_a_clock_offset_as_the_checker_does(capsys):
    """The checker compares spl.txt's own timestamps with LoadGen's: no shift applied."""
    r = analyze_json(capsys, "--power", f"ac={SS / 'spl.txt'}", "--loadgen-log", str(SS),
                     "--clock-offset-ms", "ac=700")  # fmt: skip
    assert r["efficiency"]["ac"]["millijoules_per_query_mlperf"] == pytest.approx(SS_MJ, rel=1e-10)
    assert r["power"]["ac"]["clock_offset_ms"] == pytest.approx(700.0)
    assert any("MLPerf's mean uses the samples' own timestamps" in p for p in r["problems"])


def test_repeated_timestamps_and_overrange_count_in_mlperf_s_mean(tmp_path, capsys):
    """Every Time line counts as written: a line repeating a timestamp and a 9.9E+37 reading
    both enter the checker's mean (the time-weighted figures keep one and drop the other)."""
    lines = (SS / "spl.txt").read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("Time,07-23-2024 15:50:00"))
    f = lines[i].split(",")
    dup = ",".join([*f[:3], "500.000000", *f[4:]])  # same ms, another reading
    f2 = lines[i + 5].split(",")
    over = ",".join([*f2[:3], "9.9E+37", *f2[4:]])
    edited = [*lines[:i + 1], dup, *lines[i + 1 : i + 5], over, *lines[i + 6:]]  # fmt: skip
    run = tmp_path / "run_1"
    run.mkdir()
    (run / "spl.txt").write_text("\n".join(edited) + "\n")
    shutil.copy(SS / "mlperf_log_detail.txt", run / "mlperf_log_detail.txt")
    truth = reference().compute(str(run))  # independent: plain Python over the lines
    assert truth["n_samples"] == 601  # one line more (the replaced one is the overrange)
    r = analyze_json(capsys, "--power", f"ac={run / 'spl.txt'}", "--loadgen-log", str(run))
    assert r["power"]["ac"]["mlperf_average_watts"] == pytest.approx(truth["avg_watts"], rel=1e-12)
    assert r["efficiency"]["ac"]["millijoules_per_query_mlperf"] == pytest.approx(
        truth["metric"], rel=1e-12
    )
    assert any("share a timestamp" in p for p in r["problems"])
    assert any("overrange" in p for p in r["problems"])
    assert r["power"]["ac"]["average_watts"] == pytest.approx(231.1, rel=5e-3)  # sane


def test_a_ptd_uncertainty_warning_inside_the_window_is_reported(tmp_path, capsys):
    lines = (SS / "spl.txt").read_text().splitlines()
    warning = "Time,07-23-2024 15:50:00.500,WARNING,Uncertainty 1.23%, which is above 1.00% " \
              "limit for the last sample!"  # fmt: skip
    log = tmp_path / "ptd.log"
    log.write_text("\n".join([*lines[:100], warning, *lines[100:]]) + "\n")
    r = analyze_json(capsys, "--power", f"ac={log}", "--loadgen-log", str(SS))
    (line,) = [p for p in r["problems"] if "uncertainty is above MLPerf's 1 %" in p]
    assert "Uncertainty 1.23%" in line


def test_an_invalid_loadgen_result_is_degraded(tmp_path, capsys):
    d = FIXTURES / "SingleStream_ran_out"
    text = (d / "mlperf_log_detail.txt").read_text()
    assert '"INVALID"' in text
    begin = next(ln for ln in text.splitlines() if '"power_begin"' in ln)
    start_ns = parse_ptd_time(json.loads(begin.split(":::MLLOG", 1)[1])["value"])
    csv = tmp_path / "ac.csv"
    csv.write_text(
        "t_ns,watts_mean\n"
        + "".join(f"{start_ns + k * 100_000_000},200\n" for k in range(-20, 400))
    )
    args = ["analyze", "--power", f"ac={csv}", "--loadgen-log", str(d), "--no-store"]
    assert main([*args, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["status"] == "degraded" and r["mlperf"]["validity"] == "INVALID"
    assert sum("LoadGen result INVALID" in p for p in r["problems"]) == 1
    assert main([*args, "--strict"]) == 3


def _submission(tmp_path: Path, ranging_scale: float) -> Path:
    """results/.../SingleStream/performance/{run_1,ranging,power} from the published run."""
    perf = tmp_path / "SingleStream" / "performance"
    for name in ("run_1", "ranging"):
        d = perf / name
        d.mkdir(parents=True)
        for f in ("mlperf_log_detail.txt", "mlperf_log_summary.txt", "spl.txt"):
            shutil.copy(SS / f, d / f)
    lines = []
    for ln in (SS / "spl.txt").read_text().splitlines():
        f = ln.split(",")
        if ln.startswith("Time,") and len(f) > 3:
            f[3] = f"{float(f[3]) * ranging_scale:.6f}"
        lines.append(",".join(f))
    (perf / "ranging" / "spl.txt").write_text("\n".join(lines) + "\n")
    (perf / "power").mkdir()
    for f in ("client.json", "client.log", "ptd_logs.txt"):  # server.json and .log missing
        (perf / "power" / f).write_text("{}\n")
    return perf


def test_a_submission_folder_gets_the_layout_and_ranging_checks(tmp_path, capsys):
    perf = _submission(tmp_path, ranging_scale=1.02)  # testing 1.96 % below ranging: passes
    run_1 = perf / "run_1"
    r = analyze_json(capsys, "--power", f"ac={run_1 / 'spl.txt'}", "--loadgen-log", str(run_1))
    sub = r["mlperf"]["submission"]
    assert sub["missing_files"] == ["power/server.json", "power/server.log"]
    assert any("missing power/server.json, power/server.log" in p for p in r["problems"])
    rng = sub["ranging"]
    assert rng["delta_percent"] == round((round(231.1185, 5) / round(231.1185 * 1.02, 5) - 1)
                                         * 100, 2)  # fmt: skip
    assert rng["ok"] is True and r["status"] == "ok"


def test_a_testing_pass_5_percent_below_ranging_fails_the_power_checker(tmp_path, capsys):
    perf = _submission(tmp_path, ranging_scale=1.06)
    run_1 = perf / "run_1"
    args = ["--power", f"ac={run_1 / 'spl.txt'}", "--loadgen-log", str(run_1)]
    r = analyze_json(capsys, *args)
    assert r["mlperf"]["submission"]["ranging"]["ok"] is False
    assert r["status"] == "degraded"
    assert any("below the ranging pass's" in p for p in r["problems"])
    assert main(["analyze", *args, "--strict", "--no-store"]) == 3
