"""One source's window energy split between prefill, decode and the rest, conserving the total.

At each instant the power is shared equally between the steps running (one per executor), the
way per-query energy is apportioned (:mod:`infergy.core.attribution`), so exactly (up to float
rounding)::

    prefill_j + decode_j + other_j == window energy

with ``other_j`` the time no step ran (host gaps, an idle Server). A source coarser than the
steps (the 20-ms NVML samples against 5-ms decode steps) cannot place each step's energy;
there each phase's power comes from a least-squares fit over cells of a few resolutions, where
the mix of prefill and decode varies (:func:`fit_phase_power`), and the rest of the window is
the remainder, so the total is still conserved (:func:`split_energy` says which method
applied).

The split's own uncertainty: for a source that resolves the steps, every change between prefill
and decode puts up to half its time resolution ``r`` on the wrong side, ``|P_prefill -
P_decode| * r / 2`` each (root-sum-square over the changes); for a fit, the fitted powers'
standard errors times the phases' time; without either, the smaller phase's whole energy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from infergy.core.attribution import InFlight
from infergy.core.gen_logs import DECODE, PHASE_NAMES, PREFILL, PhaseLog
from infergy.core.profile import PowerProfile
from infergy.core.trace import F64, I64, NS_PER_S, QueryLog, Window


@dataclass(frozen=True)
class SourceSplit:
    """What :func:`generative_block` needs of one source: its curve, uncertainty, resolution."""

    profile: PowerProfile
    uncertainty_j: float | None
    resolution_ns: int


@dataclass(frozen=True)
class PhaseEnergy:
    """One source's window energy split between the phases (joules).

    Attributes:
        prefill_j: energy attributed to prefill steps.
        decode_j: energy attributed to decode steps.
        other_j: energy while no step ran (the window outside the steps included).
        window_j: the window's energy.
        per_step_j: each phase's energy (the log's order).
    """

    prefill_j: float
    decode_j: float
    other_j: float
    window_j: float
    per_step_j: F64


def phase_energy(profile: PowerProfile, window: Window, phases: PhaseLog) -> PhaseEnergy:
    """Split one source's window energy between the phases; see the module docstring."""
    if len(phases) == 0:
        w = profile.energy_j([window.start_ns], [window.end_ns])
        return PhaseEnergy(0.0, 0.0, float(w[0]), float(w[0]), np.zeros(0))
    steps = QueryLog(phases.start_ns, phases.end_ns, np.ones(len(phases), np.int64))
    qe = InFlight.of(steps).apportion(profile, window)
    per = qe.per_query_j
    prefill = float(per[phases.kind == PREFILL].sum())
    decode = float(per[phases.kind == DECODE].sum())
    return PhaseEnergy(prefill, decode, qe.unattributed_j, qe.window_j, per)


def transitions(phases: PhaseLog) -> int:
    """Changes between prefill and decode, per device, in time order."""
    total = 0
    for slot in np.unique(phases.slot):
        m = phases.slot == slot
        kinds = phases.kind[m][np.argsort(phases.start_ns[m], kind="stable")]
        total += int(np.count_nonzero(kinds[1:] != kinds[:-1]))
    return total


def busy_seconds(ph: PhaseLog, executors: int) -> dict[int, float]:
    """Executor-seconds of each kind, over the executors (the time "all in that phase")."""
    span = (ph.end_ns - ph.start_ns).astype(np.float64) / NS_PER_S / max(1, executors)
    return {k: float(span[ph.kind == k].sum()) for k in PHASE_NAMES}


@dataclass(frozen=True)
class Split:
    """How one source's window energy was split, and the split's own uncertainty (J).

    ``method``: ``resolved`` (the source resolves the steps: each instant's power goes to
    the steps running then), ``fit`` (it does not, but the mix of prefill and decode varies
    between its cells: each phase's power by least squares over the cells) or ``time-share``
    (neither: energy in proportion to time, the split unknown beyond that).
    """

    energy: PhaseEnergy
    method: str
    split_j: float


FIT_CELL_RESOLUTIONS = 4
"""A fit's cells are this many of the source's resolution long (its smear stays inside)."""
FIT_MIN_CELLS = 12
FIT_MAX_CELLS = 4000


def split_energy(
    s: SourceSplit, window: Window, ph: PhaseLog, executors: int, changes: int
) -> Split:
    """Split one source's window energy between prefill, decode and the rest."""
    e = phase_energy(s.profile, window, ph)
    if len(ph) == 0:
        return Split(e, "resolved", 0.0)
    busy = busy_seconds(ph, executors)
    steps_ns = (ph.end_ns - ph.start_ns).astype(np.float64)
    if s.resolution_ns <= 0.5 * float(np.median(steps_ns)):
        p_pre = e.prefill_j / busy[PREFILL] if busy[PREFILL] > 0 else 0.0
        p_dec = e.decode_j / busy[DECODE] if busy[DECODE] > 0 else 0.0
        edges_j = abs(p_pre - p_dec) * s.resolution_ns / NS_PER_S / 2 * math.sqrt(changes)
        return Split(e, "resolved", min(edges_j, e.prefill_j, e.decode_j))
    fit = fit_phase_power(s.profile, window, ph, executors, s.resolution_ns)
    if fit is None:
        return Split(e, "time-share", min(e.prefill_j, e.decode_j))
    prefill_j = fit.prefill_w * busy[PREFILL]
    decode_j = fit.decode_w * busy[DECODE]
    other_j = e.window_j - prefill_j - decode_j
    per = e.per_step_j.copy()  # each step's share, rescaled to its phase's fitted energy
    for kind, total in ((PREFILL, prefill_j), (DECODE, decode_j)):
        m = ph.kind == kind
        have = float(per[m].sum())
        if have > 0:
            per[m] *= total / have
    split_j = math.hypot(fit.prefill_se_w * busy[PREFILL], fit.decode_se_w * busy[DECODE])
    fitted = PhaseEnergy(prefill_j, decode_j, other_j, e.window_j, per)
    return Split(fitted, "fit", min(split_j, prefill_j, decode_j))


@dataclass(frozen=True)
class PhaseFit:
    """Each phase's power from a least-squares fit over a source's cells (W, 1 sigma)."""

    prefill_w: float
    decode_w: float
    other_w: float | None
    prefill_se_w: float
    decode_se_w: float
    cells: int


def fit_phase_power(
    profile: PowerProfile, window: Window, ph: PhaseLog, executors: int, resolution_ns: int
) -> PhaseFit | None:
    """Fit ``P = P_prefill * s_p + P_decode * s_d + P_other * s_o`` over equal cells.

    ``s_*`` is the share of each cell's executor time in each phase (``s_o`` the rest); cells
    are :data:`FIT_CELL_RESOLUTIONS` resolutions long, so the source's own smearing stays
    mostly inside them and the rest is in the residuals (the standard errors). None when the
    fit is not determined: too few covered cells, a mix that does not vary, or a power <= 0.
    """
    duration = window.duration_ns
    cell_ns = max(FIT_CELL_RESOLUTIONS * resolution_ns, duration / FIT_MAX_CELLS)
    n = int(duration // cell_ns)
    if n < FIT_MIN_CELLS:
        return None
    edges = window.start_ns + np.round(np.arange(n + 1) * (duration / n)).astype(np.int64)
    x = profile.rel_s(edges)
    energy = np.diff(profile.cumulative_j(x))
    cell_s = np.diff(edges).astype(np.float64) / NS_PER_S
    covered = np.diff(profile.covered_s(x)) >= 0.999 * cell_s
    scale = np.diff(edges).astype(np.float64) * max(1, executors)
    shares = [
        busy_per_bin(ph.start_ns[ph.kind == k], ph.end_ns[ph.kind == k], edges) / scale
        for k in (PREFILL, DECODE)
    ]
    rest = np.clip(1.0 - shares[0] - shares[1], 0.0, 1.0)
    cols = [shares[0], shares[1]] + ([rest] if float(rest.max()) > 0.02 else [])
    design = np.column_stack(cols)[covered]
    y = (energy / cell_s)[covered]
    k = design.shape[1]
    if y.size < 3 * k or np.linalg.matrix_rank(design) < k:
        return None
    beta, _, _, _ = np.linalg.lstsq(design, y, rcond=None)
    if beta[0] <= 0 or beta[1] <= 0:
        return None
    resid = y - design @ beta
    sigma2 = float(resid @ resid) / max(1, y.size - k)
    cov = sigma2 * np.linalg.inv(design.T @ design)
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return PhaseFit(float(beta[0]), float(beta[1]), float(beta[2]) if k == 3 else None,
                    float(se[0]), float(se[1]), int(y.size))  # fmt: skip


def busy_per_bin(a: I64, b: I64, edges: I64) -> F64:
    """Total overlap (ns) of the intervals [a, b] with each bin [edges[k], edges[k+1])."""
    # busy time up to t: sum(max(0, t - a)) - sum(max(0, t - b)), by sorted prefix sums
    if a.size == 0:
        return np.zeros(edges.size - 1)
    t = edges.astype(np.float64)

    def ramp(x: I64) -> F64:
        xs = np.sort(x).astype(np.float64)
        k = np.searchsorted(xs, t, side="left")
        prefix = np.concatenate(([0.0], np.cumsum(xs)))
        return k * t - prefix[k]

    return np.diff(ramp(a) - ramp(b))
