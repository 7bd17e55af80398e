"""`infergy analyze` and `infergy runs` end to end, in-process, on shipped recordings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infergy.cli.app import main

ROOT = Path(__file__).resolve().parents[3]
REAL = ROOT / "examples" / "mlperf-real"
EX = ROOT / "examples" / "single-stream"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    for var in ("INFERGY_CONFIG", "STATE_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("COLUMNS", "120")


def run_json(args, capsys):
    rc = main([*args, "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_reproduces_a_published_mlperf_singlestream_power_result(capsys):
    """UntetherAI h13_u3_slim resnet50 SingleStream, MLPerf Inference v4.1: 29.2389869184 mJ."""
    r = run_json(
        ["analyze", "--power", f"ac={REAL / 'single-stream/spl.txt'}",
         "--loadgen-log", str(REAL / "single-stream")],
        capsys,
    )  # fmt: skip
    assert r["scenario"] == "single-stream"
    assert r["performance"]["queries"] == 4742678
    assert r["efficiency"]["ac"]["millijoules_per_query_mlperf"] == pytest.approx(
        29.2389869184, rel=1e-10
    )
    assert r["power"]["ac"]["mlperf_average_watts"] == pytest.approx(231.1185, rel=1e-6)
    # time-weighted beside it: a steady load, so within a fraction of a percent
    assert r["power"]["ac"]["average_watts"] == pytest.approx(231.1185, rel=2e-3)
    assert r["power"]["ac"]["coverage"] == pytest.approx(1.0)
    assert r["status"] == "ok"


def test_reproduces_a_published_mlperf_offline_power_result(capsys):
    """The same system's Offline run: 398.3299847793 W at 168,720 samples/s."""
    r = run_json(
        ["analyze", "--power", f"ac={REAL / 'offline/spl.txt'}",
         "--loadgen-log", str(REAL / "offline" / "mlperf_log_detail.txt")],
        capsys,
    )  # fmt: skip
    assert r["scenario"] == "offline"
    assert r["power"]["ac"]["mlperf_average_watts"] == pytest.approx(398.3299847793, rel=1e-10)
    assert r["performance"]["samples_per_second"] == pytest.approx(168720, rel=1e-4)
    assert r["efficiency"]["ac"]["millijoules_per_query_mlperf"] is None
    assert r["efficiency"]["ac"]["samples_per_second_per_watt"] == pytest.approx(
        168720 / r["power"]["ac"]["average_watts"], rel=1e-4
    )


def example_args():
    return [
        "analyze",
        "--power", f"gpu0={EX / 'gpu0_energy.csv'}",
        "--power", f"gpu1={EX / 'gpu1_power.csv'}",
        "--power", f"ac={EX / 'ptd_log.txt'}",
        "--loadgen-log", str(EX),
        "--queries", str(EX / "queries.csv"),
    ]  # fmt: skip


def test_example_run_aligns_stores_and_exports(capsys, tmp_path):
    r = run_json([*example_args(), "--align", "auto", "--idle-before", "6"], capsys)
    assert r["status"] == "ok"
    assert r["power"]["ac"]["clock_offset_ms"] == pytest.approx(700.0, abs=20.0)
    assert r["power"]["gpu0"]["idle_watts"] == pytest.approx(62.0, rel=0.01)
    assert r["power"]["gpu1"]["idle_watts"] == pytest.approx(48.0, rel=0.02)
    assert set(r["power"]) == {"gpu0", "gpu1", "gpus", "ac"}
    # the rest of the box is a constant 185 W in the example: AC - GPUs shows it
    rest_w = r["power"]["ac"]["average_watts"] - r["power"]["gpus"]["average_watts"]
    assert rest_w == pytest.approx(185.0, rel=0.02)
    assert r["provenance"]["inputs"]["gpu0"]["sha256"]

    assert main(["runs", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)  # one JSON array
    assert [row["run_id"] for row in rows] == [r["run_id"]]
    assert main(["runs", "show", r["run_id"][:20], "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == r
    assert main(["runs", "export", r["run_id"], "--out", str(tmp_path / "x")]) == 0
    written = capsys.readouterr().out.split()
    assert any(p.endswith("result.json") for p in written)
    exported = next(p for p in written if p.endswith("queries.csv.gz"))
    again = run_json([*example_args()[:-1], exported, "--no-store"], capsys)  # reads it back
    assert again["performance"] == r["performance"]


def test_analyze_keeps_every_simulated_mark_and_a_real_run_says_false(capsys, tmp_path):
    """The example's recordings say SIMULATED (PTD NOTICE line, CSV # line): so does the result,
    and so do its exported files when they are analysed again."""
    r = run_json([*example_args(), "--out", str(tmp_path / "x")], capsys)
    flags = {name: p["simulated"] for name, p in r["power"].items()}
    assert flags == {"gpu0": True, "gpu1": True, "gpus": True, "ac": True}, flags
    assert any(p.startswith("ac: SIMULATED") for p in r["problems"]), r["problems"]
    run = tmp_path / "x" / r["run_id"]
    spl = next(run.glob("mlperf/*/performance/run_1/spl.txt"))
    again = run_json(
        ["analyze", "--power", f"ac={spl}", "--power", f"gpu0={run / 'traces' / 'gpu0.csv'}",
         "--loadgen-log", str(EX), "--no-store"],
        capsys,
    )  # fmt: skip
    assert {n: p["simulated"] for n, p in again["power"].items()} == {"ac": True, "gpu0": True}

    real = run_json(
        ["analyze", "--power", f"ac={REAL / 'offline/spl.txt'}",
         "--loadgen-log", str(REAL / "offline"), "--no-store"],
        capsys,
    )  # fmt: skip
    assert real["power"]["ac"]["simulated"] is False  # a boolean, never null


def test_human_output_is_a_table_not_json(capsys):
    assert main([*example_args(), "--no-store"]) == 0
    out = capsys.readouterr().out
    assert "Power" in out and "Efficiency" in out and "gpus" in out
    assert out.count("* SIMULATED, not measurements: gpu0, gpu1, ac, gpus") == 2, out
    assert "ac*" in out and "gpu0*" in out, out  # starred in both tables
    assert not out.lstrip().startswith("{")


def test_strict_exits_3_on_a_degraded_result(tmp_path, capsys):
    lines = (REAL / "single-stream/spl.txt").read_text().splitlines()
    cut = lines[:200] + lines[260:]  # a minute of the analyzer missing mid-run
    log = tmp_path / "spl.txt"
    log.write_text("\n".join(cut) + "\n")
    args = ["analyze", "--power", f"ac={log}", "--loadgen-log", str(REAL / "single-stream")]
    assert main([*args, "--strict", "--no-store"]) == 3
    out = capsys.readouterr().out
    assert "degraded" in out and "gap" in out
    assert main([*args, "--no-store"]) == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["analyze", "--power", "ac=/no/such/file", "--queries", "x.csv"], "no/such/file"),
        (["analyze", "--power", "ac", "--queries", "x.csv"], "SOURCE=VALUE"),
        (["analyze", "--power", f"ac={EX / 'ptd_log.txt'}"], "--queries or --loadgen-log"),
        (["analyze", "--power", f"ac={EX / 'ptd_log.txt'}", "--loadgen-log", str(EX),
          "--idle-watts", "gpu7=3"], "gpu7"),
        (["analyze", "--power", f"ac={EX / 'ptd_log.txt'}", "--loadgen-log", str(EX),
          "--align", "sometimes"], "--align"),
        (["analyze", "--power", f"ac={EX / 'ptd_log.txt'}", "--loadgen-log", str(EX),
          "--align", "auto"], "needs a GPU"),
        (["runs", "show", "nope"], "nope"),
        # a name that says no kind (it was analysed as a "replay" source of no known kind)
        (["analyze", "--power", f"foo={EX / 'ptd_log.txt'}", "--loadgen-log", str(EX)],
         "source name 'foo' names no kind"),
        (["analyze", "--power", f"gpus={EX / 'gpu0_energy.csv'}", "--loadgen-log", str(EX)],
         "source name 'gpus' names no kind"),
        # a negative idle baseline made the dynamic energy larger than the total
        (["analyze", "--power", f"ac={EX / 'ptd_log.txt'}", "--loadgen-log", str(EX),
          "--idle-watts", "ac=-5"], "--idle-watts 'ac=-5': expected at least 0 watts"),
        (["runs", "list", "--status", "bogus"], "--status 'bogus'"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_line_and_exit_2(args, needle, capsys):
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert needle in err
    assert "Traceback" not in err
    assert err.startswith("error:")


def test_unknown_semantics_header_is_an_input_error(tmp_path, capsys):
    bad = tmp_path / "t.csv"
    bad.write_text("t_ns,volts\n1,2\n")
    assert main(["analyze", "--power", f"gpu0={bad}", "--loadgen-log", str(EX)]) == 2
    err = capsys.readouterr().err
    assert "t_ns,volts" in err and "Traceback" not in err


def test_no_sample_inside_the_window_is_exit_2(tmp_path, capsys):
    far = tmp_path / "far.csv"
    far.write_text("t_ns,watts_mean\n1000000000,100\n2000000000,100\n3000000000,100\n")
    assert main(["analyze", "--power", f"ac={far}", "--loadgen-log", str(EX)]) == 2
    assert "no power source has a valid sample" in capsys.readouterr().err


def test_bad_config_names_the_key_and_the_file(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[analysis]\ngap_factr = 3\n")
    rc = main([*example_args(), "--config", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 2 and "gap_factr" in err and str(cfg) in err


def test_debug_shows_the_traceback():
    with pytest.raises(Exception, match="no/such/file"):
        main(["analyze", "--power", "ac=/no/such/file", "--queries", "x.csv", "--debug"])


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert "infergy" in capsys.readouterr().out
    assert main(["analyze", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--power" in out and "--align" in out and "--idle-before" in out


def _maxq_config(tmp_path):
    config = tmp_path / "infergy.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "store.db"}"\n[meters]\nsimulated_gpus = 1\n'
        f'simulated_part = "h200"\nrapl = false\n[maxq]\nstate_dir = "{tmp_path / "state"}"\n',
        encoding="utf-8",
    )
    return config


def test_maxq_dry_run_prints_the_plan_and_its_time_and_changes_nothing(tmp_path, capsys):
    config = _maxq_config(tmp_path)
    rc = main(["maxq", "--config", str(config), "--power-limits", "200:700:50",
               "--batch-sizes", "256", "--point-duration", "30", "--dry-run", "--json"])  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0, out.err
    plan = json.loads(out.out)["plan"]
    assert plan["grid_points"] == 11 and plan["changes_settings"] is True
    assert plan["power_limit_range_w"] == [200.0, 700.0] and plan["simulated"] is True
    assert 0 < plan["expected_measurements"] <= 11
    assert plan["estimated_s"] > (plan["expected_measurements"] + 2) * 30
    assert not (tmp_path / "state" / "maxq-restore.json").exists()  # nothing journaled
    assert not (tmp_path / "state" / "simulated-gpus").exists()  # nothing set, ever


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--power-limits", "150:350:25"], "150, 175 W outside this GPU's allowed range 200-700 W"),
        (["--power-limits", "200:350:x"], "--power-limits: 'x' in '200:350:x' is not a number"),
        (["--sm-clocks", "1234"], "1234 MHz is not a supported clock"),
        (["--batch-sizes", "8", "--objective", "watts"], "--objective"),
        ([], "error: a sweep needs at least one axis"),
    ],
)
def test_maxq_bad_input_is_one_clear_line_and_exit_2(tmp_path, capsys, args, needle):
    rc = main(["maxq", "--config", str(_maxq_config(tmp_path)), "--dry-run", *args])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert needle in err.replace("\n", " ")
    assert "Traceback" not in err
