"""The bridge's fairness rules, exactly: a client's request budget and the console's repeat limit."""

from __future__ import annotations

import pytest

from infergy.ptd_bridge.outputs import RepeatLimiter
from infergy.ptd_bridge.server import RequestBudget


def test_a_burst_is_served_at_once_and_the_rest_at_the_rate() -> None:
    budget = RequestBudget(rate_per_s=100.0, burst=100)
    assert [budget.take(0.0, abuse_s=5.0) for _ in range(100)] == [0.0] * 100
    assert budget.take(0.0, abuse_s=5.0) == pytest.approx(0.01)
    # the wait is spent: served at 0.01 s, the next one is due 0.01 s later
    assert budget.take(0.01, abuse_s=5.0) == pytest.approx(0.01)


def test_a_client_over_its_budget_for_too_long_is_refused() -> None:
    budget = RequestBudget(rate_per_s=10.0, burst=1)
    now, waits = 0.0, []
    while (wait := budget.take(now, abuse_s=1.0)) is not None:
        waits.append(wait)
        now += wait  # it sends again the moment it is served: always over the budget
        assert now < 5, "never refused"
    assert 1.0 < now <= 1.2 and len(waits) > 5


def test_a_client_that_slows_down_is_forgiven() -> None:
    budget = RequestBudget(rate_per_s=10.0, burst=1)
    now = 0.0
    for _ in range(10):  # over the budget for 0.8 s, then a pause: again and again, 18 s
        for _ in range(9):
            wait = budget.take(now, abuse_s=1.0)
            assert wait is not None, f"refused at {now:.1f} s"
            now += wait
        now += 1.0
        assert budget.take(now, abuse_s=1.0) == 0.0  # the pause refilled the bucket


def test_repeated_lines_are_shown_a_few_times_then_counted() -> None:
    limiter = RepeatLimiter(burst=3, window_s=10.0)
    shown = [limiter.allow("missed", t * 0.25) for t in range(20)]
    assert shown == [True] * 3 + [False] * 17
    assert limiter.allow("other", 5.0)
    assert limiter.drain() == {"missed": 17}
    assert limiter.drain() == {}
    assert limiter.allow("missed", 10.0)  # a new window
