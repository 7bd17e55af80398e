"""Objectives, Pareto fronts, constraints and the recommendation's gain interval."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infergy.maxq.errors import NoFeasiblePointError, SweepSpecError
from infergy.maxq.pareto import (
    Criterion,
    latency_energy_front,
    pareto_front,
    throughput_power_front,
)
from infergy.maxq.plan import SweepPoint
from infergy.maxq.points import OBJECTIVES, MeasuredPoint, objective
from infergy.maxq.recommend import (
    Constraints,
    combine_baselines,
    gain_over,
    knee_batch_size,
    recommend,
)


def mp(
    watts: float,
    sps: float,
    *,
    rel_u: float = 0.005,
    p99_ms: float | None = None,
    simulated: bool = False,
    tokens: float | None = None,
) -> MeasuredPoint:
    return MeasuredPoint(
        point=SweepPoint(power_limit_w=watts),
        samples_per_second=sps,
        samples_per_second_uncertainty=rel_u * sps,
        average_power_w=watts,
        average_power_uncertainty_w=rel_u * watts,
        latency_ms={} if p99_ms is None else {99.0: p99_ms},
        tokens_per_second=tokens,
        tokens_per_second_uncertainty=0.0 if tokens is None else rel_u * tokens,
        simulated=simulated,
    )


def test_objectives_and_their_uncertainties():
    p = mp(400.0, 12_000.0, rel_u=0.01)
    value, u = p.samples_per_joule
    assert value == 30.0 and u == pytest.approx(30.0 * math.sqrt(2) * 0.01)
    jpq, jpq_u = p.joules_per_query
    assert jpq == pytest.approx(1 / 30) and jpq_u == pytest.approx(jpq * math.sqrt(2) * 0.01)
    assert p.tokens_per_joule is None
    assert mp(100.0, 1.0, tokens=2500.0).tokens_per_joule == pytest.approx(
        (25.0, 25 * 0.005 * 2**0.5)
    )
    assert set(OBJECTIVES) == {"samples-per-joule", "joules-per-query", "tokens-per-joule"}


def test_multistream_queries_carry_eight_samples():
    p = MeasuredPoint(SweepPoint(), 800.0, 0.0, 100.0, 0.0, samples_per_query=8.0)
    assert p.joules_per_query == (1.0, 0.0)


def test_objective_observations_are_signed_for_a_search():
    p = mp(400.0, 12_000.0)
    assert objective("samples-per-joule").observation(p).score == 30.0
    assert objective("joules-per-query").observation(p).score == pytest.approx(-1 / 30)
    with pytest.raises(SweepSpecError, match="no tokens-per-joule"):
        objective("tokens-per-joule").observation(p)
    with pytest.raises(SweepSpecError) as info:
        objective("watts")
    assert info.value.hint and "samples-per-joule" in info.value.hint


def test_the_throughput_power_front_drops_dominated_points():
    a, b, c = mp(200.0, 8_000.0), mp(300.0, 12_000.0), mp(350.0, 11_000.0)
    d = mp(300.0, 12_000.0)  # equal to b: equals do not dominate each other
    assert throughput_power_front([c, b, a, d]) == [a, b, d]  # c: b beats it on both


points_st = st.lists(
    st.tuples(st.floats(50, 700), st.floats(100, 20_000)), min_size=1, max_size=25
).map(lambda rows: [mp(w, s) for w, s in rows])


@given(points_st)
def test_front_points_are_undominated_and_every_other_point_is_dominated(points):
    front = throughput_power_front(points)
    assert front, "a non-empty set has a non-empty front"

    def beats(a, b):
        better_or_equal = (
            a.samples_per_second >= b.samples_per_second and a.average_power_w <= b.average_power_w
        )
        strictly = (
            a.samples_per_second > b.samples_per_second or a.average_power_w < b.average_power_w
        )
        return better_or_equal and strictly

    for p in points:
        dominated = any(beats(q, p) for q in points)
        if p in front:
            assert not dominated
        else:
            assert dominated
    assert [p.average_power_w for p in front] == sorted(p.average_power_w for p in front)


def test_the_latency_energy_front_skips_points_without_that_percentile():
    fast = mp(300.0, 10_000.0, p99_ms=2.0)  # 0.03 J/query
    frugal = mp(200.0, 8_000.0, p99_ms=5.0)  # 0.025 J/query
    worse = mp(300.0, 9_000.0, p99_ms=6.0)
    unknown = mp(100.0, 9_000.0)
    assert latency_energy_front([worse, frugal, unknown, fast]) == [fast, frugal]


def test_pareto_front_takes_any_criteria():
    pts = [mp(w, s) for w, s in itertools.product((1.0, 2.0), (1.0, 2.0))]
    both_max = pareto_front(pts, [Criterion(lambda p: p.samples_per_second, True)] * 2)
    assert [(p.average_power_w, p.samples_per_second) for p in both_max] == [(1.0, 2.0), (2.0, 2.0)]


def test_a_clear_gain_is_stated_with_its_interval():
    baseline = mp(700.0, 16_800.0)
    best = mp(350.0, 11_270.0)  # 32.2 vs 24.0 samples/J
    rec = recommend([baseline, best, mp(250.0, 7000.0)], baseline)
    assert rec.best is best
    assert rec.gain.relative == pytest.approx(32.2 / 24.0 - 1, rel=1e-3)
    assert rec.gain.significant and rec.gain.low < rec.gain.relative < rec.gain.high
    assert "+34.2 % over the default settings" in rec.summary
    assert "SIMULATED" not in rec.summary


def test_a_gain_inside_the_noise_is_no_significant_gain():
    baseline = mp(700.0, 16_800.0, rel_u=0.01)
    rec = recommend([mp(650.0, 15_650.0, rel_u=0.01)], baseline)  # +0.6 %, sigma 2 %
    assert rec.gain.relative > 0 and not rec.gain.significant
    assert "no significant gain over the default settings" in rec.summary


def test_when_nothing_beats_the_defaults_they_are_recommended():
    baseline = mp(700.0, 16_800.0)
    rec = recommend([mp(600.0, 12_000.0)], baseline)
    assert rec.best is baseline and rec.gain.relative == 0 and not rec.gain.significant


def test_joules_per_query_gains_are_reductions():
    baseline = mp(100.0, 100.0, rel_u=0.001)  # 1 J/query
    rec = recommend([mp(80.0, 100.0, rel_u=0.001)], baseline, objective_name="joules-per-query")
    assert rec.gain.relative == pytest.approx(0.2) and rec.gain.significant
    assert rec.unit == "J/query"


def test_constraints_exclude_points_and_say_why():
    baseline = mp(700.0, 16_800.0, p99_ms=4.0)
    slow = mp(300.0, 11_000.0, p99_ms=12.0)
    unmeasured = mp(320.0, 11_500.0)
    ok = mp(450.0, 14_000.0, p99_ms=6.0)
    limits = Constraints(max_latency_ms=10.0, min_samples_per_second=10_000.0)
    rec = recommend([slow, unmeasured, ok], baseline, constraints=limits)
    assert rec.best is ok
    reasons = {p.point.power_limit_w: why for p, why in rec.excluded}
    assert reasons == {300.0: "p99 latency 12 ms > 10 ms", 320.0: "no p99 latency measured"}
    too_strict = Constraints(min_samples_per_second=1e6)
    with pytest.raises(NoFeasiblePointError, match="no measured point meets the constraints"):
        recommend([slow], baseline, constraints=too_strict)


def test_simulated_points_make_a_simulated_recommendation():
    baseline = mp(700.0, 16_800.0, simulated=True)
    assert recommend([mp(350.0, 11_000.0, simulated=True)], baseline).summary.endswith(
        "(SIMULATED)"
    )


@given(v=st.floats(1, 100), v0=st.floats(1, 100), u=st.floats(0, 5), u0=st.floats(0, 5))
def test_the_interval_is_symmetric_and_widens_with_the_uncertainty(v, v0, u, u0):
    g = gain_over((v, u), (v0, u0), higher_is_better=True)
    assert g.low <= g.relative <= g.high
    assert g.high - g.relative == pytest.approx(g.relative - g.low)
    wider = gain_over((v, u + 1), (v0, u0), higher_is_better=True)
    assert wider.high - wider.low >= g.high - g.low - 1e-12


def test_start_and_end_baselines_merge_with_their_drift_as_uncertainty():
    start = mp(680.0, 16_900.0, rel_u=0.0, p99_ms=4.0)
    end = mp(670.0, 16_700.0, rel_u=0.0, p99_ms=4.5)
    merged = combine_baselines(start, end)
    assert merged.samples_per_second == 16_800.0
    assert merged.samples_per_second_uncertainty == pytest.approx(100.0)
    assert merged.average_power_w == 675.0 and merged.average_power_uncertainty_w == 5.0
    assert merged.latency_ms == {99.0: 4.5}


def test_the_batch_knee_is_the_smallest_batch_near_the_best():
    eff = {1: 10.1, 8: 21.4, 32: 24.2, 64: 24.7, 128: 24.9, 256: 24.9}
    assert knee_batch_size(eff) == 32
    assert knee_batch_size(eff, within=0.01) == 64
    with pytest.raises(NoFeasiblePointError):
        knee_batch_size({})
