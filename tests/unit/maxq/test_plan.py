"""Sweep axes: the range syntax, its errors, GPU constraints, batch ``auto``, the grid."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infergy.maxq.control import PowerLimitConstraints
from infergy.maxq.errors import SweepSpecError
from infergy.maxq.plan import (
    AUTO,
    Axes,
    SweepPoint,
    parse_batch_sizes,
    parse_clocks,
    parse_numbers,
    parse_power_limits,
    parse_precisions,
    plan_duration_s,
)

H200_LIMITS = PowerLimitConstraints(200.0, 700.0, 700.0)


def test_a_range_includes_its_stop():
    assert parse_power_limits("150:350:25") == (150, 175, 200, 225, 250, 275, 300, 325, 350)


def test_lists_and_ranges_mix_sort_and_deduplicate():
    assert parse_numbers("300, 200:250:25,200", name="x") == (200, 225, 250, 300)
    assert parse_numbers("60:61:0.5", name="x") == (60, 60.5, 61)
    assert parse_numbers("0.1:0.3:0.1", name="x") == (0.1, 0.2, 0.3)  # no float drift


@given(start=st.integers(1, 500), step=st.integers(1, 50), count=st.integers(0, 40))
def test_any_exact_range_has_count_plus_one_evenly_spaced_points(start, step, count):
    values = parse_numbers(f"{start}:{start + step * count}:{step}", name="x")
    assert len(values) == count + 1
    assert values[0] == start and values[-1] == start + step * count


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("", "empty value"),
        ("150,,200", "empty value"),
        ("150:350", "must be start:stop:step"),
        ("150:350:25:5", "must be start:stop:step"),
        ("150:350:0", "needs a step > 0"),
        ("150:350:-25", "needs a step > 0"),
        ("350:150:25", "runs backwards"),
        ("150:340:25", "does not reach its stop 340 .* use 150:325:25"),
        ("150:abc:25", "'abc' in '150:abc:25' is not a number"),
        ("watts", "'watts' in 'watts' is not a number"),
        ("nan", "not a finite number"),
        ("1:100000:1", "more than 1000 points"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, words):
    with pytest.raises(SweepSpecError, match=words):
        parse_power_limits(spec)


def test_limits_outside_the_gpu_range_name_the_allowed_range():
    with pytest.raises(SweepSpecError) as info:
        parse_power_limits("150:350:25", H200_LIMITS)
    assert "150, 175 W outside this GPU's allowed range 200-700 W" in str(info.value)
    assert parse_power_limits("200:700:100", H200_LIMITS)[-1] == 700


def test_non_positive_limits_are_refused_without_constraints():
    with pytest.raises(SweepSpecError, match="must be > 0 W"):
        parse_power_limits("0,100")


def test_clocks_must_be_whole_supported_values_and_the_error_names_the_nearest():
    supported = list(range(1980, 344, -15))
    assert parse_clocks("1200:1260:15", supported) == (1200, 1215, 1230, 1245, 1260)
    with pytest.raises(SweepSpecError) as info:
        parse_clocks("1203", supported)
    assert "1203 MHz is not a supported clock (nearest: 1200, 1215 MHz" in str(info.value)
    assert "supported 345-1980 MHz" in str(info.value)
    with pytest.raises(SweepSpecError, match="whole numbers"):
        parse_clocks("1200.5")


def test_batch_sizes_take_auto_last_and_refuse_zero():
    assert parse_batch_sizes("128,1,8,AUTO,32") == (1, 8, 32, 128, AUTO)
    assert parse_batch_sizes("auto") == (AUTO,)
    assert parse_batch_sizes("1:4:1") == (1, 2, 3, 4)
    with pytest.raises(SweepSpecError, match=">= 1"):
        parse_batch_sizes("0,8")
    with pytest.raises(SweepSpecError, match="whole numbers"):
        parse_batch_sizes("1.5")
    with pytest.raises(SweepSpecError, match="not a number"):
        parse_batch_sizes("big")


def test_precisions_keep_order_and_refuse_unknown_names():
    assert parse_precisions("FP32, fp16,fp32") == ("fp32", "fp16")
    with pytest.raises(SweepSpecError, match="unknown 'fp8'") as info:
        parse_precisions("fp16,fp8")
    assert info.value.hint and "fp32, fp16, bf16, int8" in info.value.hint


def test_the_grid_is_the_product_of_the_swept_axes():
    axes = Axes(power_limits_w=(200, 300), batch_sizes=(8, AUTO), precisions=("fp16",))
    grid = axes.grid()
    assert axes.size == len(grid) == 4
    assert grid[0] == SweepPoint(power_limit_w=200, batch_size=8, precision="fp16")
    assert grid[-1] == SweepPoint(power_limit_w=300, batch_size=AUTO, precision="fp16")
    assert Axes().grid() == (SweepPoint(),) and Axes().size == 1


def test_point_descriptions_name_only_the_set_axes():
    assert SweepPoint(300.0, 1200, None, 64, "fp16").describe() == (
        "300 W, SM 1200 MHz, batch 64, fp16"
    )
    assert SweepPoint().describe() == "default settings"


def test_plan_duration_counts_settling_and_measuring_per_point():
    assert plan_duration_s(10, point_duration_s=30, settle_s=5, fixed_s=20) == 370
