"""``infergy runs list`` and ``runs compare`` on runs analysed from the shipped recordings."""

from __future__ import annotations

import io
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from infergy.cli.app import main
from infergy.cli.console import render_runs
from infergy.core.compare import compare_results

ROOT = Path(__file__).resolve().parents[3]
EX = ROOT / "examples" / "single-stream"
REAL = ROOT / "examples" / "mlperf-real"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("INFERGY_CONFIG", "STATE_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("COLUMNS", "80")


def _analyze(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    args = ["analyze", "--power", f"gpu0={EX / 'gpu0_energy.csv'}",
            "--power", f"ac={EX / 'ptd_log.txt'}", "--loadgen-log", str(EX),
            "--queries", str(EX / "queries.csv"), *extra, "--json"]  # fmt: skip
    assert main(args) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def _offline(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    args = ["analyze", "--power", f"ac={REAL / 'offline/spl.txt'}",
            "--loadgen-log", str(REAL / "offline"), "--json"]  # fmt: skip
    assert main(args) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_the_listing_shows_whole_ids_the_creation_time_and_headline_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ss, off = _analyze(capsys), _offline(capsys)
    assert main(["runs", "list"]) == 0  # captured: a pipe, 80 columns
    out = capsys.readouterr().out
    lines = {
        r["run_id"]: next(ln for ln in out.splitlines() if r["run_id"] in ln) for r in (ss, off)
    }
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    for r in (ss, off):
        line = lines[r["run_id"]]  # in a pipe: one whole line per run, nothing folded or cut
        assert today in line and "None" not in line, line
        assert _shows(line, r["performance"]["samples_per_second"]), line
        assert _shows(line, r["power"]["ac"]["average_watts"]), line
    mj = ss["efficiency"]["ac"]["millijoules_per_query_mlperf"]
    assert _shows(lines[ss["run_id"]], mj)  # SingleStream: MLPerf's mJ/query
    sps_w = off["efficiency"]["ac"]["samples_per_second_per_watt"]
    assert _shows(lines[off["run_id"]], sps_w)  # Offline: samples/s/W


def _shows(line: str, value: float) -> bool:
    """Whether ``line`` shows ``value`` to the 4 significant digits the listing prints."""
    numbers = [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", line)]
    return any(n == pytest.approx(value, rel=1e-3) for n in numbers)


def test_a_simulated_headline_source_is_marked(capsys: pytest.CaptureFixture[str]) -> None:
    row = {"run_id": "r1", "status": "ok", "scenario": "offline", "headline_source": "ac",
           "headline_simulated": True, "average_watts": 80.0}  # fmt: skip
    for width in (80, 200):
        buf = io.StringIO()
        render_runs(Console(file=buf, width=width, force_terminal=True, color_system=None), [row])
        assert "ac*" in buf.getvalue() and "* SIMULATED" in buf.getvalue()


def test_on_an_80_column_terminal_ids_are_never_cut(capsys: pytest.CaptureFixture[str]) -> None:
    _analyze(capsys)
    _offline(capsys)
    assert main(["runs", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    buf = io.StringIO()
    render_runs(Console(file=buf, width=80, force_terminal=True, color_system=None), rows)
    text = buf.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    for row in rows:
        assert row["run_id"] in text, text  # whole, on one line
    assert "W=" in text and "samples/s=" in text, text


def test_json_is_one_array_of_summaries(capsys: pytest.CaptureFixture[str]) -> None:
    ss = _analyze(capsys)
    assert main(["runs", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and [r["run_id"] for r in rows] == [ss["run_id"]]
    row = rows[0]
    assert row["headline_source"] == "ac" and row["created_unix_ns"] > 0
    assert row["average_watts"] == pytest.approx(ss["power"]["ac"]["average_watts"])
    assert row["millijoules_per_query_mlperf"] == pytest.approx(
        ss["efficiency"]["ac"]["millijoules_per_query_mlperf"]
    )
    assert main(["runs", "list", "--json", "--status", "failed"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_compare_gives_deltas_with_uncertainties_and_the_settings_that_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _analyze(capsys)
    config = tmp_path / "c.toml"
    config.write_text("[analysis]\ngap_factor = 3.0\n")
    b = _analyze(capsys, "--config", str(config), "--idle-before", "6")
    assert main(["runs", "compare", a["run_id"][:22], b["run_id"], "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["a"], got["b"]) == (a["run_id"], b["run_id"])
    figures = {f["name"]: f for f in got["figures"]}
    energy = figures["power.ac.energy_joules"]
    ua, ub = a["power"]["ac"]["uncertainty_joules"], b["power"]["ac"]["uncertainty_joules"]
    assert energy["delta_uncertainty"] == pytest.approx(math.hypot(ua, ub))
    watts = figures["power.ac.average_watts"]
    assert watts["uncertainty_a"] == pytest.approx(ua / a["window"]["duration_s"])
    idle = figures["power.gpu0.idle_watts"]  # only B has an idle baseline: no delta
    assert idle["a"] is None and idle["b"] is not None and idle["delta"] is None
    eff = figures["efficiency.ac.samples_per_second_per_watt"]
    assert eff["uncertainty_a"] == pytest.approx(eff["a"] * ua / a["power"]["ac"]["energy_joules"])
    assert figures["performance.queries"]["delta"] == 0
    settings = {s["name"]: (s["a"], s["b"]) for s in got["settings"]}
    assert settings == {"config.analysis.gap_factor": (2.0, 3.0)}

    assert main(["runs", "compare", a["run_id"], b["run_id"]]) == 0
    out = capsys.readouterr().out
    assert a["run_id"] in out and b["run_id"] in out
    assert "B - A" in out and "config.analysis.gap_factor" in out


def test_compare_of_results_without_figures_has_no_deltas() -> None:
    bare = {"run_id": "x", "status": "aborted", "scenario": "offline", "performance": {}}
    c = compare_results(bare, bare | {"run_id": "y", "scenario": "server"})
    assert c.figures == []
    assert [(s.name, s.a, s.b) for s in c.settings] == [("scenario", "offline", "server")]
