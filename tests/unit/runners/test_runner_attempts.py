"""The measured run's attempts: when to cut one, when to reject it, how the next is sized."""

from __future__ import annotations

import numpy as np
import pytest

from infergy.core.trace import Scenario
from infergy.runners.attempts import (
    CORRECTION_MARGIN,
    FINAL_MARGIN,
    Attempt,
    OfflineGuard,
    attempts_note,
    corrected,
    judge,
    window_problem,
)
from infergy.runners.lg_settings import Calibration

CAL = Calibration(10_000.0, 3_000_000, 500_000, 2_000_000)


def _records(window_s: float, n: int, samples: int = 1, latency_ns: int = 1000) -> np.ndarray:
    """``n`` queries spread evenly over ``window_s`` (the last completes at the window's end)."""
    issue = np.linspace(0, round(window_s * 1e9) - latency_ns, n).astype(np.int64)
    return np.stack([issue, issue + latency_ns, np.full(n, samples), np.zeros(n)], 1).astype(
        np.int64
    )


def test_the_guard_lets_an_attempt_on_course_run() -> None:
    g = OfflineGuard(10.0)
    assert g.verdict(0.5, 10, 110_000) is None  # too early to project
    assert g.verdict(5.0, 50_000, 110_000) is None  # on course: 11 s
    assert g.verdict(11.9, 105_000, 110_000) is None  # long, but not yet past 1.2x


def test_the_guard_cuts_a_clearly_long_attempt_early_and_any_past_1_2x() -> None:
    g = OfflineGuard(10.0)
    why = g.verdict(2.5, 10_000, 110_000)  # projected 27.5 s > 13 s
    assert why is not None and "projected to last 27.5 s" in why
    assert g.verdict(2.5, 21_500, 110_000) is None  # projected 12.8 s: within the limit
    late = g.verdict(12.01, 109_000, 110_000)
    assert late is not None and "12.0 s" in late
    assert OfflineGuard(2.0).verdict(0.6, 1, 1000) is None  # projections start at 1 s at least


def test_judge_keeps_an_attempt_that_met_min_duration_and_was_not_cut() -> None:
    a = judge(Scenario.OFFLINE, 2.0, _records(2.2, 2200), {"offline_expected_qps": 1000.0},
              cut=None, min_duration_met=True)  # fmt: skip
    assert a.rejected is None and a.samples == 2200 and a.expected == 1000.0
    assert a.window_s == pytest.approx(2.2) and a.samples_per_second == pytest.approx(1000.0)


def test_judge_rejects_a_cut_or_dry_attempt() -> None:
    cut = judge(
        Scenario.OFFLINE, 2.0, _records(1.0, 500), {}, cut="projected", min_duration_met=True
    )
    assert cut.rejected == "cut: projected"
    dry = judge(Scenario.OFFLINE, 2.0, _records(0.7, 700), {}, cut=None, min_duration_met=False)
    assert "min_duration" in (dry.rejected or "") and "0.70 s" in (dry.rejected or "")
    # LoadGen's verdict unknown: the window decides
    unknown = judge(Scenario.SINGLE_STREAM, 2.0, _records(1.5, 10), {}, cut=None,
                    min_duration_met=None)  # fmt: skip
    assert unknown.rejected is not None
    empty = judge(Scenario.OFFLINE, 2.0, np.zeros((0, 4), np.int64), {}, cut=None,
                  min_duration_met=None)  # fmt: skip
    assert empty.rejected == "nothing completed" and empty.window_s is None


def test_the_next_attempt_is_sized_from_what_the_rejected_one_sustained() -> None:
    slow = Attempt(1.0, 1250, 1250.0, "projected", "cut: projected", 10_000.0)
    assert corrected(CAL, Scenario.OFFLINE, slow, _records(1.0, 1250), final=False).capacity_sps \
        == pytest.approx(1250.0)  # fmt: skip
    # the last attempt is never cut: it leans long (a dry one would be INVALID)
    last = corrected(CAL, Scenario.OFFLINE, slow, _records(1.0, 1250), final=True)
    assert last.capacity_sps == pytest.approx(1250.0 * FINAL_MARGIN)
    dry = Attempt(0.5, 15_000, 30_000.0, None, "ran out", 10_000.0)
    assert corrected(CAL, Scenario.OFFLINE, dry, _records(0.5, 100), final=False).capacity_sps \
        == pytest.approx(30_000.0 * CORRECTION_MARGIN)  # fmt: skip
    ss = corrected(CAL, Scenario.SINGLE_STREAM, dry, _records(0.5, 100, latency_ns=206_000),
                   final=False)  # fmt: skip
    assert ss.single_latency_ns == round(206_000 / CORRECTION_MARGIN)
    assert ss.capacity_sps == CAL.capacity_sps


def test_notes_say_which_attempt_is_the_result() -> None:
    kept = Attempt(2.2, 2750, 1250.0, None, None, 1250.0)
    assert attempts_note([kept]) == []
    rejected = Attempt(1.0, 1250, 1250.0, "projected", "cut: projected", 10_000.0)
    lines = attempts_note([rejected, kept])
    assert len(lines) == 2 and "attempt 1 rejected (cut: projected" in lines[0]
    assert "1,250 samples/s" in lines[0] and "attempt 2" in lines[1]
    assert window_problem(Scenario.OFFLINE, [rejected, kept], 2.0) == []
    long = Attempt(3.0, 3000, 1000.0, None, None, 1250.0)
    (line,) = window_problem(Scenario.OFFLINE, [rejected, rejected, long], 2.0)
    assert "3.0 s for --duration 2 s (1.50x) after 3 attempts" in line
    assert window_problem(Scenario.SERVER, [long], 2.0) == []
