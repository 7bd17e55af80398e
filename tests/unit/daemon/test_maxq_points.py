"""A point's figures from its session result; what is usable; merged repeats; the conclusion."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infergy.daemon.maxq_points import entry_from_json, entry_json, point_entry, setting_binds
from infergy.daemon.maxq_record import baseline_of, conclude, merged
from infergy.maxq.recommend import Constraints

RESULT: dict[str, Any] = {
    "run_id": "mq-1-p02", "status": "ok", "scenario": "offline",
    "window": {"duration_s": 10.0},
    "performance": {"queries": 1, "samples": 20000, "samples_per_second": 2000.0,
                    "latency_ms": {"p50": 4.0, "p90": 5.0, "p99": 6.0}},
    "power": {"gpu0": {"kind": "gpu", "average_watts": 296.0, "uncertainty_joules": 30.0,
                       "coverage": 1.0},
              "gpu0.avg": {"kind": "gpu", "average_watts": 290.0, "coverage": 0.5},
              "ac": {"kind": "analyzer", "average_watts": 400.0, "uncertainty_joules": 8.0,
                     "coverage": 1.0}},
    "loadgen": {"validity": "VALID"},
}  # fmt: skip
POINT = {"power_limit_w": 300.0, "sm_clock_mhz": None, "mem_clock_mhz": None,
         "batch_size": 64, "precision": "fp16"}  # fmt: skip


def entry(result: dict[str, Any] = RESULT, **kw: Any) -> Any:
    args = {"index": 2, "role": "point", "point": POINT, "source": "gpu0", "batch_size": 64,
            "degraded_coverage": 0.95, "limit_w": 300.0, "ordered_axis": "power_limit_w",
            "enforced_limit_w": 300.0, "simulated": False} | kw  # fmt: skip
    return point_entry(result, **args)


def test_figures_and_uncertainties_come_from_the_analysis() -> None:
    e = entry()
    assert e.usable and e.measured is not None
    m = e.measured
    assert m.samples_per_second == 2000.0 and m.average_power_w == 296.0
    assert m.average_power_uncertainty_w == pytest.approx(3.0)  # 30 J over 10 s
    assert m.samples_per_second_uncertainty == pytest.approx(6.4)  # one batch over 10 s
    assert m.latency_ms == {50.0: 4.0, 90.0: 5.0, 99.0: 6.0}
    assert e.lost_sources == []  # gpu0.avg is a comparison signal, not a lost meter
    assert m.setting_binds  # 296 W >= 97 % of 300 W


def test_a_point_not_ok_or_invalid_is_kept_with_the_reason_and_not_usable() -> None:
    invalid = copy.deepcopy(RESULT) | {"loadgen": {"validity": "INVALID"}}
    e = entry(invalid)
    assert not e.usable and e.problems == ["LoadGen reports the run INVALID"]
    assert e.measured is not None  # the figures stay for the record and the plots
    degraded = copy.deepcopy(RESULT) | {"status": "degraded"}
    assert entry(degraded).problems == ["the session result is degraded"]
    empty = copy.deepcopy(RESULT)
    empty["performance"]["samples_per_second"] = None
    assert not entry(empty).usable and entry(empty).measured is None
    lost = copy.deepcopy(RESULT)
    lost["power"]["ac"]["coverage"] = 0.4
    assert entry(lost).lost_sources == ["ac"]


def test_a_limit_binds_at_the_draw_and_a_clock_lock_binds_below_the_cap() -> None:
    power = {"gpu0": {"average_watts": 250.0}}
    assert not setting_binds(power, limit_w=300.0, ordered_axis="power_limit_w")
    assert setting_binds(power, limit_w=255.0, ordered_axis="power_limit_w")
    assert setting_binds(power, limit_w=300.0, ordered_axis="sm_clock_mhz")  # lock holds
    assert not setting_binds(power, limit_w=255.0, ordered_axis="sm_clock_mhz")  # cap holds
    assert setting_binds({}, limit_w=300.0, ordered_axis="power_limit_w")  # no GPU: unknown


def test_an_entry_survives_the_record_round_trip() -> None:
    e = entry()
    back = entry_from_json(entry_json(e, e.measured.samples_per_joule))
    assert back.measured == e.measured and back.usable and back.point == POINT


def _variant(run_id: str, sps: float, watts: float, validity: str = "VALID", **point: Any) -> Any:
    result = copy.deepcopy(RESULT) | {"run_id": run_id, "loadgen": {"validity": validity}}
    result["performance"]["samples_per_second"] = sps
    result["power"]["gpu0"]["average_watts"] = watts
    return entry(result, point=POINT | point)


def test_the_conclusion_never_picks_an_unusable_point_and_merges_repeats() -> None:
    start = _variant("s", 3000.0, 700.0, power_limit_w=700.0)
    start.role = "baseline-start"
    end = _variant("e", 3000.0, 690.0, power_limit_w=700.0)
    end.role = "baseline-end"
    best_but_invalid = _variant("p1", 2900.0, 200.0, "INVALID", power_limit_w=200.0)
    good = _variant("p2", 2000.0, 300.0)
    again = _variant("p3", 2100.0, 300.0)  # the same setting measured twice
    entries = [start, best_but_invalid, good, again, end]
    assert len(merged([e for e in entries if e.role == "point"])) == 1
    assert baseline_of(entries) is not None
    rec, fronts, problems = conclude(entries, objective_name="samples-per-joule",
                                     constraints=Constraints())  # fmt: skip
    assert problems == [] and rec is not None
    assert rec.best.point.power_limit_w == 300.0  # 14.5 samples/J invalid at 200 W: never
    assert rec.best.samples_per_second == pytest.approx(2050.0)  # the mean of both readings
    assert rec.gain.significant
    front = [f["point"]["power_limit_w"] for f in fronts["throughput_power"]]
    assert 200.0 not in front
    slow = conclude(entries, objective_name="samples-per-joule",
                    constraints=Constraints(min_samples_per_second=2500.0))[0]  # fmt: skip
    assert slow is not None and slow.best is slow.baseline and not slow.gain.significant
