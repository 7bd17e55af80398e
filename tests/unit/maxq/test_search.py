"""Searches: grid order, golden-section exactness and ending, plateaus, noise, replay, coordinates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infergy.core.gpu_model import PARTS, ModelSettings, steady_state
from infergy.maxq.coordinate import CoordinateSearch, make_search
from infergy.maxq.errors import SearchError
from infergy.maxq.plan import Axes, SweepPoint
from infergy.maxq.search import (
    GoldenSectionSearch,
    GridSearch,
    Observation,
    best_point,
    measurement_count,
    run_search,
)


def line(n: int) -> list[SweepPoint]:
    return [SweepPoint(power_limit_w=float(i)) for i in range(n)]


def index(point: SweepPoint) -> int:
    assert point.power_limit_w is not None
    return int(point.power_limit_w)


def test_grid_search_asks_every_point_in_order_and_repeats_until_told():
    points = line(3)
    search = GridSearch(points)
    assert search.ask() == search.ask() == points[0]
    asked = []
    while (p := search.ask()) is not None:
        asked.append(p)
        search.tell(p, Observation(1.0))
    assert asked == points and search.grid_size == 3


def test_telling_a_point_off_the_grid_is_an_error():
    with pytest.raises(SearchError, match="999 W is not a point of this sweep"):
        GoldenSectionSearch(line(5)).tell(SweepPoint(power_limit_w=999.0), Observation(1.0))


def test_no_measurement_has_no_best():
    with pytest.raises(SearchError, match="no point was measured"):
        best_point({})


@given(n=st.integers(1, 300), data=st.data())
def test_golden_section_finds_the_exact_peak_of_a_unimodal_curve_in_log_points(n, data):
    peak = data.draw(st.integers(0, n - 1))
    up = data.draw(st.floats(0.01, 10.0))
    down = data.draw(st.floats(0.01, 10.0))

    def measure(p: SweepPoint) -> Observation:
        i = index(p)
        return Observation(-(up * (peak - i) if i <= peak else down * (i - peak)))

    search = run_search(GoldenSectionSearch(line(n)), measure)
    assert index(best_point(search.measured)[0]) == peak
    assert search.ask() is None
    bound = math.log(n + 1) / math.log((1 + 5**0.5) / 2) + 4
    assert len(search.measured) <= min(n, bound), f"{len(search.measured)} points for n={n}"


@given(scores=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200))
def test_golden_section_ends_on_any_curve_with_its_bracket_measured(scores):
    search = GoldenSectionSearch(line(len(scores)))
    steps = 0
    while (p := search.ask()) is not None:
        search.tell(p, Observation(scores[index(p)], uncertainty=abs(scores[index(p)]) * 0.01))
        steps += 1
        assert steps <= len(scores), "more measurements than the axis has points"
    assert all(o.measurements <= 2 for o in search.measured.values())
    bracket = search.bracket()
    assert bracket is not None
    left, _, right = bracket
    for i in range(left + 1, right):  # nothing left unmeasured where the optimum may be
        assert SweepPoint(power_limit_w=float(i)) in search.measured


def test_a_plateau_at_the_top_does_not_hide_the_peak():
    """Caps above the draw are the same point: equal scores, flagged as not binding."""
    n, peak, plateau = 21, 6, 15

    def measure(p: SweepPoint) -> Observation:
        i = min(index(p), plateau)
        return Observation(-abs(i - peak) * 1.0, binding=index(p) < plateau)

    search = run_search(GoldenSectionSearch(line(n)), measure)
    assert index(best_point(search.measured)[0]) == peak


def test_exact_ties_keep_the_lower_side_even_without_the_binding_flag():
    def measure(p: SweepPoint) -> Observation:
        return Observation(-abs(min(index(p), 12) - 4) * 1.0)

    search = run_search(GoldenSectionSearch(line(21)), measure)
    assert index(best_point(search.measured)[0]) == 4


def model_line(key: str) -> tuple[list[SweepPoint], dict[SweepPoint, float]]:
    part = PARTS[key]
    limits = np.linspace(part.min_power_limit_w, part.max_power_limit_w, 21)
    points = [SweepPoint(power_limit_w=float(w)) for w in limits]
    truth = {
        p: steady_state(part, ModelSettings(float(p.power_limit_w or 0)), batch_size=256)
        for p in points
    }
    return points, {p: o.samples_per_joule for p, o in truth.items()}


@pytest.mark.parametrize("key", list(PARTS))
def test_with_half_a_percent_of_noise_the_result_is_within_two_percent(key):
    points, truth = model_line(key)
    optimum = max(truth.values())
    counts = []
    for seed in range(20):
        rng = np.random.default_rng(seed)

        def measure(p: SweepPoint, rng: np.random.Generator = rng) -> Observation:
            v = truth[p]
            return Observation(v * (1 + rng.normal(0, 0.005)), 0.005 * v)

        search = run_search(GoldenSectionSearch(points), measure)
        found = truth[search.best()[0]]
        assert found >= 0.98 * optimum, f"seed {seed}: {found / optimum:.4f} of the optimum"
        counts.append(measurement_count(search))
    assert max(counts) <= 16, f"measurements per search: {counts}"


def test_a_search_rebuilt_from_stored_results_asks_what_the_original_would():
    points = line(34)

    def measure(p: SweepPoint) -> Observation:
        return Observation(-((index(p) - 23) ** 2))

    original = GoldenSectionSearch(points)
    for _ in range(4):
        p = original.ask()
        assert p is not None
        original.tell(p, measure(p))
    resumed = GoldenSectionSearch(points)
    for p, obs in original.measured.items():
        resumed.tell(p, obs)
    assert resumed.ask() == original.ask()


def test_coordinate_search_finds_the_joint_optimum_in_few_points():
    axes = Axes(
        power_limits_w=tuple(float(w) for w in range(200, 701, 25)),
        batch_sizes=(1, 8, 64, 256),
        precisions=("fp32", "fp16"),
    )

    def score(p: SweepPoint) -> float:
        batch_gain = {1: 0.4, 8: 0.8, 64: 0.97, 256: 1.0}[p.batch_size]  # type: ignore[index]
        precision_gain = 1.0 if p.precision == "fp16" else 0.35
        limit = p.power_limit_w or 0.0
        return batch_gain * precision_gain * (1 - ((limit - 375) / 500) ** 2)

    search = run_search(CoordinateSearch(axes), lambda p: Observation(score(p)))
    best = best_point(search.measured)[0]
    assert best == SweepPoint(power_limit_w=375.0, batch_size=256, precision="fp16")
    assert len(search.measured) <= 0.15 * axes.size
    assert search.ask() is None


def test_coordinate_search_follows_an_interaction_between_batch_and_limit():
    """At the reference limit batch 64 is best, at the optimal limit batch 256: the check sees it."""
    axes = Axes(power_limits_w=tuple(float(w) for w in range(21)), batch_sizes=(16, 64, 256))

    def score(p: SweepPoint) -> float:
        limit = p.power_limit_w or 0.0
        low = limit < 15
        penalty = {16: 0.1, 64: 0.02 if low else 0.0, 256: 0.0 if low else 0.03}
        return -abs(limit - 5) * 0.01 - penalty[p.batch_size]  # type: ignore[index]

    search = CoordinateSearch(axes)
    first = search.ask()
    assert first == SweepPoint(power_limit_w=20.0, batch_size=16)  # screening at the reference
    run_search(search, lambda p: Observation(score(p)))
    assert best_point(search.measured)[0] == SweepPoint(power_limit_w=5.0, batch_size=256)
    assert len(search.measured) < 0.5 * axes.size


def test_coordinate_search_without_a_limit_axis_is_the_grid_of_the_others():
    axes = Axes(batch_sizes=(1, 8), precisions=("fp32", "fp16"))
    search = run_search(CoordinateSearch(axes), lambda p: Observation(float(p.batch_size or 0)))
    assert set(search.measured) == set(axes.grid())


def test_run_search_stops_at_max_points():
    search = run_search(GridSearch(line(10)), lambda p: Observation(0.0), max_measurements=3)
    assert len(search.measured) == 3


def test_merged_observations_are_the_inverse_variance_mean():
    a = Observation(10.0, 1.0)
    b = Observation(13.0, 2.0, binding=False)
    m = a.merged(b)
    assert m.score == pytest.approx((10 / 1 + 13 / 4) / (1 + 1 / 4))
    assert m.uncertainty == pytest.approx((1 + 1 / 4) ** -0.5)
    assert m.measurements == 2 and m.binding, "one binding measurement keeps the point binding"
    assert Observation(1.0).merged(Observation(3.0)).score == 2.0


def test_a_close_call_is_measured_again_and_merged():
    """Two points within noise of each other: the search asks one of them a second time."""
    search = GoldenSectionSearch(line(9))
    scores = dict.fromkeys(range(9), 0.5) | {3: 1.0, 4: 1.01}
    asked = []
    while (p := search.ask()) is not None:
        asked.append(index(p))
        search.tell(p, Observation(scores[index(p)], 0.01))
    assert len(asked) > len(set(asked)), f"no point measured twice: {asked}"
    assert max(o.measurements for o in search.measured.values()) == 2
    assert index(search.best()[0]) == 4


def test_without_repeats_no_point_is_asked_twice():
    search = GoldenSectionSearch(line(3), max_measurements=1)
    run_search(search, lambda p: Observation(1.0 - abs(index(p) - 1) * 0.001, 0.01))
    assert measurement_count(search) == len(search.measured)


def test_make_search_picks_the_strategy():
    axes = Axes(power_limits_w=(1.0, 2.0), precisions=("fp16",))
    assert isinstance(make_search(axes, "grid"), GridSearch)
    assert isinstance(make_search(axes), CoordinateSearch)
    assert make_search(axes).grid_size == 2


def test_batches_tied_at_the_reference_limit_each_get_a_line_search():
    """Batch 64 and 256 look alike at the top limit, but their optimal limits differ."""
    axes = Axes(power_limits_w=tuple(float(w) for w in range(21)), batch_sizes=(16, 64, 256))

    def score(p: SweepPoint) -> float:
        limit = p.power_limit_w or 0.0
        if p.batch_size == 64:
            return 1.0 - 0.0125 * abs(limit - 12)
        if p.batch_size == 256:
            return 1.05 - 0.05 * abs(limit - 5) if limit < 6 else 0.99 - 0.0068 * (limit - 6)
        return 0.5

    search = run_search(CoordinateSearch(axes), lambda p: Observation(score(p), 0.01))
    assert best_point(search.measured)[0] == SweepPoint(power_limit_w=5.0, batch_size=256)
    without = run_search(
        CoordinateSearch(axes, screen_z=0.0), lambda p: Observation(score(p), 0.01)
    )
    assert best_point(without.measured)[0].batch_size == 64, "the case needs the contenders"


def test_a_flat_bracket_ends_the_line_search_within_its_tolerance():
    # a plateau within 0.5 % of its peak across the middle of a 21-point axis
    points = line(21)

    def score(i: int) -> float:
        return 100.0 - 0.02 * (i - 10) ** 2 - (5.0 if i < 3 or i > 17 else 0.0)

    def run(tolerance: float) -> tuple[int, int]:
        search = GoldenSectionSearch(points, tolerance=tolerance)
        while (p := search.ask()) is not None:
            search.tell(p, Observation(score(index(p)), 0.1))
        return measurement_count(search), index(search.best()[0])

    exhaustive, peak = run(0.0)
    flat, near = run(0.01)
    assert flat < exhaustive  # fewer probes once the bounds are within 1 % of the best
    assert score(near) >= 0.99 * score(peak)  # and still within the tolerance of the peak
    # a steep peak is not flat: the tolerance changes nothing there
    steep = GoldenSectionSearch(points, tolerance=0.01)
    while (p := steep.ask()) is not None:
        steep.tell(p, Observation(100.0 - 3.0 * abs(index(p) - 7), 0.1))
    assert index(steep.best()[0]) == 7


def test_the_tolerance_applies_only_to_a_sweep_of_the_ordered_axis_alone():
    alone = CoordinateSearch(Axes(power_limits_w=(1.0, 2.0, 3.0), batch_sizes=(8,)))
    joint = CoordinateSearch(Axes(power_limits_w=(1.0, 2.0, 3.0), batch_sizes=(8, 64)))
    assert alone.line_tolerance == 0.01 and joint.line_tolerance == 0.0
