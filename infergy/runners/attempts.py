"""A measured run that lasts what was asked: guard an attempt, judge it, correct the estimate.

LoadGen sizes a run before it starts: Offline issues one query of ``1.1 x min_duration x
offline_expected_qps`` samples and the run lasts until all are done; SingleStream/MultiStream
generate ``2 x min_duration / expected_latency`` queries and end early, INVALID, when they run
out. The expectation comes from the warm-up, a few seconds long; on a busy machine the
throughput during the run can differ from it by 2-3x (seen under power-dev: windows of 0.5-3.8x
``--duration``). A wrong estimate is corrected, never reported:

- while an Offline attempt runs, :class:`OfflineGuard` projects its end from the samples done
  so far and cuts it (the rest of its samples abandoned) once it is certain to, or clearly
  will, last longer than :data:`WINDOW_HIGH` x ``--duration``;
- :func:`judge` rejects an attempt that was cut or missed LoadGen's ``min_duration``;
- :func:`corrected` turns what the rejected attempt measured (seconds of the real path, not a
  warm-up's second) into the next attempt's calibration.

At most :data:`MAX_ATTEMPTS` attempts; the last one is never cut, and if it still misses the
window its result says so. Only the last attempt's LoadGen logs and queries are kept.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any

from infergy.core.trace import Scenario
from infergy.runners.lg_settings import Calibration
from infergy.runners.recorder import I64

MAX_ATTEMPTS = 3
"""Measured attempts at most: the warm-up's estimate, then two corrections."""
WINDOW_LOW = 1.0
"""An attempt shorter than this x ``--duration`` missed LoadGen's min_duration (INVALID)."""
WINDOW_HIGH = 1.2
"""An Offline attempt is cut once it has lasted this x ``--duration``."""
PROJECTION_LIMIT = 1.3
"""... or earlier, once its projected length exceeds this x ``--duration``."""
PROJECTION_FROM = 0.25
"""Projections are trusted from this share of ``--duration`` on (and at least 1 s)."""
GENERATIVE_PROJECTION_FROM = 0.5
"""... for a generative run (continuous batching ramps up over its first sequences)."""
CORRECTION_MARGIN = 1.03
"""A run that ran dry asks for this much more than it sustained (it ended before the load
fell off; a little margin keeps the next one from running dry on noise)."""
FINAL_MARGIN = 1.05
"""The last attempt is never cut: it leans to the long side (1.155x ``--duration`` at par),
since one that runs dry is INVALID while one a little long is only long."""


@dataclass(frozen=True)
class OfflineGuard:
    """When to cut an Offline attempt (pure: the engine's watcher thread calls :meth:`verdict`).

    Attributes:
        duration_s: ``--duration``.
        projection_from: projections are trusted from this share of ``--duration`` on (a
            generative run starts slowly: its first sequences all prefill, then finish
            together, so its early completion rate says little).
    """

    duration_s: float
    projection_from: float = PROJECTION_FROM

    def verdict(self, elapsed_s: float, done: int, total: int) -> str | None:
        """Why to cut now (None: let it run), ``elapsed_s`` after the query was issued."""
        if total <= 0:
            return None
        limit_s = WINDOW_HIGH * self.duration_s
        if elapsed_s > limit_s:
            return f"still running after {elapsed_s:.1f} s ({WINDOW_HIGH:g}x --duration)"
        if elapsed_s < max(self.projection_from * self.duration_s, 1.0) or done <= 0:
            return None
        projected_s = elapsed_s * total / done
        if projected_s > PROJECTION_LIMIT * self.duration_s:
            return (
                f"projected to last {projected_s:.1f} s from {done:,} of {total:,} samples "
                f"in {elapsed_s:.1f} s"
            )
        return None


@dataclass(frozen=True)
class Attempt:
    """One measured attempt, as the result records it.

    Attributes:
        window_s: first issue to last completion of the attempt (None: nothing completed).
        samples: samples completed.
        samples_per_second: what the attempt sustained (None: nothing completed).
        cut: why the attempt was cut short (None: LoadGen ran it to the end).
        rejected: why it is not the result (None: it is).
        expected: LoadGen's expectation it was sized for (``offline_expected_qps`` or
            ``*_expected_latency_ns``).
    """

    window_s: float | None
    samples: int
    samples_per_second: float | None
    cut: str | None
    rejected: str | None
    expected: float | None

    def to_json(self) -> dict[str, Any]:
        """As the result's ``loadgen.attempts`` entry."""
        return {
            "window_s": self.window_s, "samples": self.samples,
            "samples_per_second": self.samples_per_second, "cut": self.cut,
            "rejected": self.rejected, "expected": self.expected,
        }  # fmt: skip


_EXPECTED = {
    Scenario.OFFLINE: "offline_expected_qps",
    Scenario.SINGLE_STREAM: "single_stream_expected_latency_ns",
    Scenario.MULTI_STREAM: "multi_stream_expected_latency_ns",
    Scenario.SERVER: "server_target_qps",
}


def judge(
    scenario: Scenario,
    duration_s: float,
    records: I64,
    settings: dict[str, Any],
    *,
    cut: str | None,
    min_duration_met: bool | None,
) -> Attempt:
    """What an attempt did and whether it can be the result.

    Args:
        scenario: the run's scenario.
        duration_s: ``--duration``.
        records: the attempt's ``(issue_ns, complete_ns, samples, slot)`` rows.
        settings: the TestSettings values it ran with.
        cut: why it was cut short, if it was.
        min_duration_met: LoadGen's ``result_min_duration_met`` (None: not logged).
    """
    expected = settings.get(_EXPECTED[scenario])
    exp = float(expected) if isinstance(expected, int | float) else None
    if len(records) == 0:
        return Attempt(None, 0, None, cut, cut or "nothing completed", exp)
    window_s = (int(records[:, 1].max()) - int(records[:, 0].min())) / 1e9
    samples = int(records[:, 2].sum())
    sps = samples / window_s if window_s > 0 else None
    rejected = None
    if cut is not None:
        rejected = f"cut: {cut}"
    elif min_duration_met is False or (
        min_duration_met is None and window_s < WINDOW_LOW * duration_s
    ):
        rejected = (
            f"ran out of samples after {window_s:.2f} s, short of --duration {duration_s:g} s "
            "(LoadGen: min_duration not met)"
        )
    return Attempt(window_s, samples, sps, cut, rejected, exp)


def retryable(scenario: Scenario) -> bool:
    """Server's length is its schedule's (target QPS x duration): nothing to correct."""
    return scenario is not Scenario.SERVER


def corrected(
    cal: Calibration, scenario: Scenario, attempt: Attempt, records: I64, *, final: bool
) -> Calibration:
    """The calibration the next attempt is sized from: what the rejected attempt sustained.

    Args:
        cal: what the rejected attempt was sized from.
        scenario: the run's scenario.
        attempt: the rejected attempt.
        records: its rows.
        final: the next attempt is the last (never cut).
    """
    margin = (1.0 if attempt.cut is not None else CORRECTION_MARGIN) * (
        FINAL_MARGIN if final else 1.0
    )
    if scenario is Scenario.OFFLINE:
        sps = attempt.samples_per_second or cal.capacity_sps
        return replace(cal, capacity_sps=sps * margin)
    if len(records) == 0:
        return cal
    # SingleStream/MultiStream ran dry: faster than expected. One record per query.
    median_ns = int(statistics.median((records[:, 1] - records[:, 0]).tolist()))
    expected_ns = max(1, round(median_ns / margin))
    if scenario is Scenario.SINGLE_STREAM:
        return replace(cal, single_latency_ns=expected_ns)
    if scenario is Scenario.MULTI_STREAM:
        return replace(cal, multi_latency_ns=expected_ns)
    return cal


def attempts_note(attempts: list[Attempt]) -> list[str]:
    """The result's account of rejected attempts (nothing when the first one was kept)."""
    if len(attempts) <= 1:
        return []
    lines = []
    for i, a in enumerate(attempts[:-1], start=1):
        sps = f"{a.samples_per_second:,.0f} samples/s" if a.samples_per_second else "nothing"
        lines.append(f"note: measured attempt {i} rejected ({a.rejected}; it sustained {sps})")
    last = attempts[-1]
    if last.rejected is None:
        lines.append(
            f"note: attempt {len(attempts)} was sized from attempt {len(attempts) - 1}'s "
            "measured throughput and is the result; the earlier ones are not"
        )
    return lines


def window_problem(scenario: Scenario, attempts: list[Attempt], duration_s: float) -> list[str]:
    """A kept Offline attempt longer than HIGH x --duration (the last one is never cut).

    One too short is INVALID, and LoadGen's verdict already says so.
    """
    w = attempts[-1].window_s if attempts else None
    if scenario is not Scenario.OFFLINE or w is None or w <= WINDOW_HIGH * duration_s:
        return []
    n = len(attempts)
    return [
        f"the Offline window is {w:.1f} s for --duration {duration_s:g} s "
        f"({w / duration_s:.2f}x) after {n} attempt{'s' if n > 1 else ''} (the throughput "
        "changed during the run)"
    ]
