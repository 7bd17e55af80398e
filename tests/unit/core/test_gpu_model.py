"""The GPU model's physics: fitted figures, monotone power, the cap's clock, memory binding, knees."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infergy.core.gpu_model import (
    H200,
    PARTS,
    PRECISIONS,
    ModelSettings,
    at_clock,
    idle_state,
    memory_clock_mhz,
    steady_state,
)


def default(part):
    return ModelSettings(part.default_power_limit_w)


def test_h200_matches_what_the_lent_h200_measures_at_default_settings():
    point = steady_state(H200, default(H200), batch_size=256, precision="fp16")
    assert point.samples_per_second == pytest.approx(16_800, rel=0.01)
    assert point.power_w == pytest.approx(675, rel=0.01)
    assert point.sm_clock_mhz == 1980 and not point.power_capped
    idle = idle_state(H200, default(H200))
    assert idle.sm_clock_mhz == 345
    assert idle.power_w == pytest.approx(80, abs=2)
    assert idle.simulated and point.simulated


@pytest.mark.parametrize(
    ("key", "lo_w", "hi_w"), [("t4", 60, 70), ("l4", 40, 72), ("a2", 40, 60), ("h200", 200, 700)]
)
def test_parts_have_their_limit_ranges_and_clock_lists(key, lo_w, hi_w):
    part = PARTS[key]
    assert (part.min_power_limit_w, part.max_power_limit_w) == (lo_w, hi_w)
    assert part.default_power_limit_w == hi_w
    assert list(part.sm_clocks_mhz) == sorted(part.sm_clocks_mhz, reverse=True)
    assert {a - b for a, b in zip(part.sm_clocks_mhz, part.sm_clocks_mhz[1:], strict=False)} == {15}
    assert "SIMULATED" in part.name


@pytest.mark.parametrize("key", ["t4", "l4", "a2"])
def test_small_parts_are_power_capped_at_their_default_limit(key):
    part = PARTS[key]
    point = steady_state(part, default(part), batch_size=256)
    assert point.power_capped
    assert point.power_w == pytest.approx(part.default_power_limit_w, rel=1e-6)
    assert point.sm_clock_mhz < part.max_sm_clock_mhz


@given(
    part=st.sampled_from(list(PARTS.values())),
    batch=st.integers(1, 2048),
    precision=st.sampled_from(list(PRECISIONS)),
    mem_index=st.integers(0, 1),
    f1=st.floats(0.0, 1.0),
    f2=st.floats(0.0, 1.0),
)
def test_power_and_throughput_rise_with_the_sm_clock(part, batch, precision, mem_index, f1, f2):
    """The cap's clock solve relies on power being monotone in the clock."""
    lo, hi = sorted((f1, f2))
    span = part.max_sm_clock_mhz - part.min_sm_clock_mhz
    mem = part.mem_clocks_mhz[min(mem_index, len(part.mem_clocks_mhz) - 1)]
    kw = {"mem_clock_mhz": mem, "batch_size": batch, "precision": precision}
    a = at_clock(part, part.min_sm_clock_mhz + lo * span, **kw)
    b = at_clock(part, part.min_sm_clock_mhz + hi * span, **kw)
    assert a.power_w <= b.power_w + 1e-9
    assert a.samples_per_second <= b.samples_per_second + 1e-9


@given(
    part=st.sampled_from(list(PARTS.values())),
    fraction=st.floats(0.0, 1.0),
    batch=st.sampled_from([1, 8, 64, 256]),
)
def test_a_cap_lowers_the_clock_until_the_power_fits(part, fraction, batch):
    limit_w = part.min_power_limit_w + fraction * (part.max_power_limit_w - part.min_power_limit_w)
    point = steady_state(part, ModelSettings(limit_w), batch_size=batch)
    if point.over_limit:
        assert point.sm_clock_mhz == part.min_sm_clock_mhz
        assert point.power_w > limit_w
    else:
        assert point.power_w <= limit_w + 1e-6
        if point.power_capped:  # the solve leaves no headroom: the cap binds
            assert point.power_w == pytest.approx(limit_w, rel=1e-6)


def test_a_locked_clock_bounds_the_clock_and_the_cap_still_wins():
    locked = steady_state(H200, ModelSettings(700, sm_lock_mhz=(1200, 1200)), batch_size=256)
    assert locked.sm_clock_mhz == 1200 and not locked.power_capped
    capped = steady_state(H200, ModelSettings(250, sm_lock_mhz=(1500, 1500)), batch_size=256)
    assert capped.sm_clock_mhz < 1500 and capped.power_capped
    idle = idle_state(H200, ModelSettings(700, sm_lock_mhz=(900, 1500)))
    assert idle.sm_clock_mhz == 900
    assert idle.power_w == pytest.approx(idle_state(H200, default(H200)).power_w)


def test_throughput_follows_the_clock_until_memory_binds():
    slow_mem = ModelSettings(700, mem_lock_mhz=(2201, 2201))
    assert memory_clock_mhz(H200, slow_mem.mem_lock_mhz) == 2201
    full = steady_state(H200, default(H200), batch_size=256)
    starved = steady_state(H200, slow_mem, batch_size=256)
    assert starved.mem_activity > 0.95  # the bandwidth is saturated while busy
    assert starved.samples_per_second < full.samples_per_second * 0.95  # memory-bound at 1980
    low_clock = ModelSettings(700, sm_lock_mhz=(900, 900))
    low_clock_slow_mem = ModelSettings(700, sm_lock_mhz=(900, 900), mem_lock_mhz=(2201, 2201))
    a = steady_state(H200, low_clock, batch_size=256)
    b = steady_state(H200, low_clock_slow_mem, batch_size=256)
    assert b.samples_per_second == pytest.approx(a.samples_per_second)  # compute-bound at 900
    assert b.power_w < a.power_w  # and the slower memory saves power for free


def test_efficiency_vs_the_power_limit_is_unimodal_with_an_interior_optimum_on_h200():
    limits = range(200, 701, 25)
    eff = [steady_state(H200, ModelSettings(w), batch_size=256).samples_per_joule for w in limits]
    peak = max(range(len(eff)), key=eff.__getitem__)
    assert 0 < peak < len(eff) - 1, "the optimum should lie inside the range"
    assert all(a <= b for a, b in itertools.pairwise(eff[: peak + 1]))
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(eff[peak:]))
    assert eff[peak] > 1.15 * eff[-1]


@pytest.mark.parametrize("key", list(PARTS))
def test_samples_per_joule_rise_and_saturate_with_the_batch_with_a_knee(key):
    part = PARTS[key]
    batches = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    eff = [steady_state(part, default(part), batch_size=b).samples_per_joule for b in batches]
    assert eff[1] > 1.2 * eff[0], "small batches waste the per-batch overhead"
    best = max(eff)
    knee = next(b for b, e in zip(batches, eff, strict=True) if e >= 0.95 * best)
    assert 8 <= knee <= 128, f"knee at batch {knee}: the curve should saturate in the middle"


@pytest.mark.parametrize("key", list(PARTS))
def test_fp32_costs_more_energy_per_sample_than_fp16(key):
    part = PARTS[key]
    fp16 = steady_state(part, default(part), batch_size=64, precision="fp16")
    fp32 = steady_state(part, default(part), batch_size=64, precision="fp32")
    assert fp32.samples_per_second < 0.6 * fp16.samples_per_second
    assert fp32.samples_per_joule < 0.6 * fp16.samples_per_joule


def test_bad_inputs_are_programming_errors():
    with pytest.raises(ValueError, match="batch size"):
        steady_state(H200, default(H200), batch_size=0)
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        steady_state(H200, default(H200), batch_size=1, precision="fp8")
