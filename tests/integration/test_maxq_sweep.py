"""MaxQ sweeps end to end on a simulated GPU: the real session code, LoadGen child, meters.

Every point is a real session (the ``sim`` workload sleeping the model's batch latency under
the real LoadGen, the real NVML meter over the simulated board following the same model),
so these tests pin the sweep driver: baselines, journal, restore, record, and the faults of
issue 14 (bad ranges, unsupported clocks, no permission, a setter failing mid-sweep, an
analyzer lost mid-sweep). Points are 1 s long; a sweep takes 10-25 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infergy.core.gpu_model import H200, ModelSettings, steady_state
from infergy.maxq.errors import (
    ControlPermissionError,
    SweepSpecError,
    UnsupportedSettingError,
)
from infergy.store.db import Store
from tests.integration.maxq_support import (
    Recorder,
    board_controls,
    board_settings,
    journal_exists,
    run,
    spec,
)

pytestmark = pytest.mark.integration


def test_a_power_limit_grid_sweep_measures_restores_and_recommends(tmp_path: Path) -> None:
    sweep_spec = spec(power_limits="300,700", batch_sizes="256", precisions="fp16", search="grid")
    journaled: list[bool] = []
    observer = Recorder(on_start=lambda i, role: journaled.append(journal_exists(tmp_path)))
    sweep, record = run(tmp_path, sweep_spec, observer=observer)
    assert record is not None and record["status"] == "ok", record and record["problems"]
    roles = [p["role"] for p in record["points"]]
    assert roles == ["baseline-start", "point", "baseline-end"]  # 700 W is the start baseline
    assert all(p["usable"] for p in record["points"]), record["points"]
    assert journaled == [True, True, True]  # the journal is on disk before every measurement
    assert not journal_exists(tmp_path)  # restored and verified: the journal is gone
    assert record["restore"] == {"verified": True, "gpus": ["GPU 0 (NVIDIA H200 (SIMULATED))"],
                                 "error": None}  # fmt: skip
    assert board_settings(tmp_path)["power_limit_w"] == 700.0  # type: ignore[index]
    # the measurement follows the model: 300 W draws about 300 W at the model's throughput
    capped = next(p for p in record["points"] if p["role"] == "point")
    model = steady_state(H200, ModelSettings(300.0), batch_size=256)
    # (a 1-s window's edges, where fewer batches are in flight, pull the mean a few % below)
    assert 0.95 * 300.0 <= capped["average_power_w"] <= 300.0 * 1.01
    assert capped["samples_per_second"] == pytest.approx(model.samples_per_second, rel=0.05)
    assert capped["setting_binds"] is True
    rec = record["recommendation"]
    assert rec["point"]["power_limit_w"] == 300.0 and rec["gain"]["significant"] is True
    assert 0.1 < rec["gain"]["relative"] < 0.4 and rec["gain"]["low"] > 0
    assert "SIMULATED" in rec["summary"] and record["simulated"] is True
    assert record["search"]["workloads_prepared"] == 1  # one prepared workload for all points
    with Store.open(tmp_path / "store.db") as store:  # every point is a stored session
        for p in record["points"]:
            result = store.get_result(p["run_id"])
            assert result["status"] == "ok" and result["power"]["gpu0"]["simulated"] is True
    assert record["idle_window"] is not None and record["plan"]["changes_settings"] is True
    assert sweep.record.status == "ok"


def test_a_batch_and_precision_sweep_never_calls_a_setter(tmp_path: Path) -> None:
    # controls that refuse every change: a batch/precision sweep must not need one
    controls = board_controls(permitted=False)
    seen: list[bool] = []
    observer = Recorder(on_start=lambda i, role: seen.append(journal_exists(tmp_path)))
    _, record = run(
        tmp_path, spec(batch_sizes="16,256", precisions="fp32,fp16"), controls=controls,
        observer=observer,
    )  # fmt: skip
    assert record is not None and record["status"] == "ok", record and record["problems"]
    assert [c.setter_calls for c in controls.made] == [[]]  # type: ignore[attr-defined]
    assert seen and not any(seen) and record["journal"] is None and record["restore"] is None
    points = {(p["point"]["batch_size"], p["point"]["precision"]) for p in record["points"]}
    assert {(16, "fp32"), (16, "fp16"), (256, "fp32")} <= points
    best = record["recommendation"]["point"]
    assert best["precision"] == "fp16"  # fp32 is slower per watt on the model


def _nothing_changed(tmp_path: Path, controls: object) -> None:
    assert not journal_exists(tmp_path)
    settings = board_settings(tmp_path)
    assert settings is None or settings["power_limit_w"] == 700.0
    made = getattr(controls, "made", [])
    assert all(c.setter_calls == [] for c in made)


def test_a_range_outside_the_limits_names_the_allowed_range_and_changes_nothing(
    tmp_path: Path,
) -> None:
    controls = board_controls()
    with pytest.raises(SweepSpecError, match=r"100, 150 W outside .* allowed range 200-700 W"):
        run(tmp_path, spec(power_limits="100:300:50"), controls=controls)
    _nothing_changed(tmp_path, controls)


def test_unsupported_clocks_are_refused_before_anything_changes(tmp_path: Path) -> None:
    controls = board_controls()
    with pytest.raises(SweepSpecError, match=r"1234 MHz is not a supported clock \(nearest"):
        run(tmp_path, spec(sm_clocks="1200,1234"), controls=controls)
    with pytest.raises(UnsupportedSettingError, match="cannot lock its memory clock"):
        run(tmp_path, spec(mem_clocks="5001"), part="t4", controls=controls)
    _nothing_changed(tmp_path, controls)


def test_no_permission_is_one_clear_error_before_any_change(tmp_path: Path) -> None:
    controls = board_controls(permitted=False)
    with pytest.raises(ControlPermissionError, match="not permitted"):
        run(tmp_path, spec(power_limits="300,700", batch_sizes="256"), controls=controls)
    _nothing_changed(tmp_path, controls)


def test_a_setter_failing_mid_sweep_restores_keeps_the_points_and_resumes(
    tmp_path: Path,
) -> None:
    # setter calls: 1-3 apply the defaults for the start baseline, 4 sets the first point
    controls = board_controls(fail_on_setter_call=7)
    sweep_spec = spec(power_limits="300,600,700", batch_sizes="256", search="grid")
    _, record = run(tmp_path, sweep_spec, controls=controls)
    assert record is not None and record["status"] == "failed"
    stopped = [p for p in record["problems"] if p.startswith("stopped")]
    assert len(stopped) == 1 and "injected failure" in stopped[0]
    assert [p["role"] for p in record["points"]] == ["baseline-start", "point"]  # kept
    assert record["restore"]["verified"] is True and not journal_exists(tmp_path)
    assert board_settings(tmp_path)["power_limit_w"] == 700.0  # type: ignore[index]
    # --resume continues where it stopped: the stored points are replayed, not measured again
    observer = Recorder()
    _, resumed = run(tmp_path, sweep_spec, observer=observer, resume=record)
    assert resumed is not None and resumed["status"] == "ok", resumed and resumed["problems"]
    assert not [n for n in observer.notes if n.startswith("resume:")]  # same questions asked
    limits = [p["point"]["power_limit_w"] for p in resumed["points"] if p["role"] == "point"]
    assert limits == [300.0, 600.0]
    assert [s[1] for s in observer.started] == ["point", "baseline-end"]  # only 600 W was new
    assert resumed["recommendation"]["point"]["power_limit_w"] == 300.0


def test_an_analyzer_lost_mid_sweep_stops_it_restores_and_keeps_the_points(
    tmp_path: Path,
) -> None:
    def unplug(index: int, role: str) -> None:
        if index == 2:  # the first point after the baseline: the analyzer is gone for good
            assert observer.sweep is not None and observer.sweep.meter_set is not None
            emulator = observer.sweep.meter_set.emulator
            assert emulator is not None
            emulator.unplug(None)

    observer = Recorder(on_start=unplug)
    sweep_spec = spec(power_limits="300,500,700", batch_sizes="256", search="grid",
                      meter=["nvml", "sim"], source="gpu0")  # fmt: skip
    _, record = run(tmp_path, sweep_spec, observer=observer)
    assert record is not None and record["status"] == "failed"
    stopped = [p for p in record["problems"] if p.startswith("stopped")]
    assert len(stopped) == 1 and "sim lost coverage" in stopped[0], record["problems"]
    assert [p["role"] for p in record["points"]] == ["baseline-start", "point"]
    assert record["points"][0]["usable"] and not record["points"][1]["usable"]
    assert record["restore"]["verified"] is True and not journal_exists(tmp_path)
    assert board_settings(tmp_path)["power_limit_w"] == 700.0  # type: ignore[index]
    rec = record["recommendation"]  # nothing usable beside the default settings
    assert rec["is_default"] is True and rec["gain"]["significant"] is False


def test_a_tokens_per_joule_sweep_of_a_simulated_decoder_recommends_by_tokens(
    tmp_path: Path,
) -> None:
    sweep_spec = spec(workload="llm", objective="tokens-per-joule", power_limits="400,700",
                      batch_sizes="32", precisions="bf16", search="grid",
                      input_tokens="normal:256:64", output_tokens="16:32", point_duration=4,
                      warmup=2)  # fmt: skip
    _, record = run(tmp_path, sweep_spec)
    assert record is not None and record["status"] == "ok", record and record["problems"]
    for p in record["points"]:
        assert p["tokens_per_second"] > 0, p
        tokens_per_j = p["tokens_per_second"] / p["average_power_w"]
        assert p["objective"] == pytest.approx(tokens_per_j, rel=1e-9)  # the token objective
    rec = record["recommendation"]
    assert rec is not None and "SIMULATED" in rec["summary"], (
        record.get("conclusion"),
        [(p["usable"], p["problems"]) for p in record["points"]],
    )
    with Store.open(tmp_path / "store.db") as store:
        result = store.get_result(record["points"][0]["run_id"])
        assert result["generative"]["sources"]["gpu0"]["tokens_per_second_per_watt"] > 0
