"""Summing several sources (the GPUs of one box) on a common time grid.

The sum is an ``interval_mean`` trace on a regular grid: each grid value is the summed energy of
all sources over the grid interval divided by its length, so energy is conserved on grid
boundaries whatever the sources' semantics. A grid interval that any source does not cover fully
is invalid (NaN): a sum with a missing term is not silently smaller.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from infergy.core.profile import DEFAULT_GAP_FACTOR, PowerProfile
from infergy.core.trace import Semantics, Trace
from infergy.errors import TraceError

_FULL = 1 - 1e-9


def sum_traces(
    traces: Sequence[Trace],
    *,
    step_ns: int | None = None,
    gap_factor: float = DEFAULT_GAP_FACTOR,
    profiles: Sequence[PowerProfile] | None = None,
) -> Trace:
    """Sum traces on a common grid.

    Args:
        traces: the sources, all on the host clock.
        step_ns: grid step; defaults to the finest nominal period among the sources.
        gap_factor: passed to each source's profile.
        profiles: the traces' profiles, when the caller already built them (same order).

    Returns:
        An ``interval_mean`` trace whose values are the summed mean power per grid step.
    """
    if not traces:
        msg = "nothing to sum: no traces given"
        raise TraceError(msg)
    step = int(step_ns or min(t.nominal_period_ns for t in traces))
    if profiles is None:
        profiles = [PowerProfile.of(t, gap_factor) for t in traces]
    starts = [t.t_ns[0] for t in traces if len(t)]
    ends = [t.t_ns[-1] for t in traces if len(t)]
    if not starts:
        msg = "nothing to sum: every trace is empty"
        raise TraceError(msg)
    begin, end = int(min(starts)), int(max(ends))
    grid = begin + step * np.arange(1, max(1, -(-(end - begin) // step)) + 1, dtype=np.int64)
    total = np.zeros(grid.size, dtype=np.float64)
    valid = np.ones(grid.size, dtype=bool)
    for prof in profiles:
        x = prof.rel_s(np.concatenate(([grid[0] - step], grid)))
        e = np.diff(prof.cumulative_j(x))
        c = np.diff(prof.covered_s(x))
        total += e
        valid &= c >= (step / 1e9) * _FULL
    values = np.where(valid, total / (step / 1e9), np.nan)
    return Trace(grid, values, Semantics.INTERVAL_MEAN, step)
