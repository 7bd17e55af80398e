"""An energy counter anchored to its device's dense power samples, as one source of a result.

The analysis (:mod:`infergy.core.analysis`) anchors a counter source ``gpu0`` read sparsely
(~1 s, densely around the window's edges) to its 20-ms samples (``gpu0.samples``) with
:func:`~infergy.core.anchored.anchor`, and then reports that source from the anchored curve:

- ``energy_joules``, ``coverage``, ``gaps``, the per-query split, idle power and the ``gpus``
  sum come from the curve (exact between counter reads, the samples' shape inside);
- ``samples``, ``invalid_samples`` and ``resets`` count the counter's own reads, as for any
  counter (the curve's knots are not readings); the 20-ms samples are counted in
  ``anchoring.samples``;
- the uncertainty is :func:`~infergy.core.anchored_window.anchored_window`'s (quantization,
  edges, shape, extrapolation), not the plain counter's rule, which on the curve would claim
  1 mJ plus a 20-ms edge term;
- ``anchoring`` says how: counter reads and samples in the window, the median read interval,
  the scale (counter energy over samples energy) and whether it drifts, how the window was
  covered, the samples' noise and the median shape weight.

A drifting scale is a note, not a degradation: the counter stays the truth, and it is the
samples source's own figures that are flagged (``counter_agreement`` in its entry). The store
keeps the raw counter and samples; whoever needs the curve again (``infergy plot``) recomputes
it (:func:`anchored_curves`), which costs ~15 ms for a 10-min run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from infergy.core.anchored import SHAPED, AnchoredCurve, anchor
from infergy.core.anchored_window import AnchoredWindow, anchored_window
from infergy.core.energy import WindowEnergy, window_energy
from infergy.core.inputs import SAMPLES_SUFFIX
from infergy.core.profile import DEFAULT_GAP_FACTOR
from infergy.core.trace import NS_PER_S, Semantics, Trace, Window
from infergy.core.uncertainty import UncertaintyParts, energy_uncertainty

NOISY_WEIGHT = 0.5
"""Below this median shape weight the curve's resolution is the counter's read interval: the
samples' shape was mostly noise at their period and the curve follows the counter."""


def anchor_source(
    counter: Trace, samples: Trace, gap_factor: float = DEFAULT_GAP_FACTOR
) -> AnchoredCurve | None:
    """The anchored curve of a counter and its samples, or None when there is nothing to anchor.

    Nothing to anchor: the trace is not a counter, the samples are not power, or either has
    fewer than two readings.
    """
    if counter.semantics is not Semantics.COUNTER or samples.semantics is Semantics.COUNTER:
        return None
    if len(counter) < 2 or int(np.count_nonzero(samples.valid)) < 2:
        return None
    return anchor(counter, samples, gap_factor=gap_factor)


def anchored_curves(
    traces: Mapping[str, Trace], gap_factor: float = DEFAULT_GAP_FACTOR
) -> dict[str, AnchoredCurve]:
    """The curve of every counter ``X`` whose samples ``X.samples`` are among ``traces``.

    Stored runs keep the raw counter and samples: this rebuilds what the analysis used.
    """
    out = {}
    for name, trace in traces.items():
        samples = traces.get(name + SAMPLES_SUFFIX)
        if samples is not None:
            curve = anchor_source(trace, samples, gap_factor)
            if curve is not None:
                out[name] = curve
    return out


@dataclass(frozen=True)
class AnchoredFigures:
    """One anchored source's figures over the window.

    Attributes:
        energy: the curve's window energy, coverage and gaps.
        reads: the raw counter's readings, invalid readings and resets in the window.
        window: coverage by kind, the window's scale and the uncertainty parts.
        uncertainty: the parts as the result reports them.
        entry: the result's ``anchoring`` block.
        effective_period_ns: the curve's time resolution for the per-query split.
        notes: lines for ``problems``.
    """

    energy: WindowEnergy
    reads: WindowEnergy
    window: AnchoredWindow
    uncertainty: UncertaintyParts
    entry: dict[str, Any]
    effective_period_ns: int
    notes: list[str]

    @property
    def drifted(self) -> bool:
        """The samples disagree with the counter in the window beyond the scale's uncertainty."""
        return self.window.scale.drifted()


def anchored_figures(
    name: str,
    curve: AnchoredCurve,
    counter: Trace,
    samples: Trace,
    window: Window,
    *,
    offset_uncertainty_ns: int | None = None,
) -> AnchoredFigures:
    """The figures of source ``name`` (its raw ``counter`` and ``samples`` on the host clock)."""
    samples_name = name + SAMPLES_SUFFIX
    energy = window_energy(curve.trace, window, profile=curve.profile)
    reads = window_energy(counter, window)
    aw = anchored_window(curve, window)
    clock_j = None
    if offset_uncertainty_ns is not None:
        clock_j = energy_uncertainty(
            curve.profile, window, offset_uncertainty_ns=offset_uncertainty_ns
        ).clock_offset_j
    u = aw.uncertainty
    parts = UncertaintyParts(
        analyzer_j=None,
        edges_j=u.edges_j,
        quantization_j=u.quantization_j,
        clock_offset_j=clock_j,
        shape_j=u.shape_j,
        extrapolation_j=u.extrapolation_j,
    )
    interval_s = read_interval_s(counter, window)
    weight = _median_weight(curve, window)
    period_ns = samples.nominal_period_ns
    noisy = weight is not None and weight < NOISY_WEIGHT and interval_s is not None
    effective_ns = round(interval_s * NS_PER_S) if noisy and interval_s else period_ns
    inside = samples.between(window.start_ns, window.end_ns)
    scale = aw.scale
    entry: dict[str, Any] = {
        "samples_source": samples_name,
        "counter_reads": reads.samples,
        "samples": int(np.count_nonzero(inside.valid)),
        "counter_read_interval_s": interval_s,
        "scale": scale.as_dict(),
        "drifted": scale.drifted(),
        "coverage": aw.coverage.as_dict() | {"shaped_fraction": aw.coverage.shaped_fraction},
        "noise_watts": curve.noise_w,
        "median_shape_weight": weight,
        "effective_resolution_ms": effective_ns / 1e6,
    }
    notes = _notes(name, samples_name, aw)
    return AnchoredFigures(energy, reads, aw, parts, entry, effective_ns, notes)


def flag_samples(power: Mapping[str, Any], anchored: Iterable[str]) -> None:
    """Tell each anchored source's samples entry (``X.samples``) how they agree with ``X``.

    Adds ``counter_agreement`` to the samples' entry of the result's ``power``: the window's
    counter/samples scale, its uncertainty and whether it drifts.
    """
    for name in anchored:
        entry, samples_entry = power.get(name), power.get(name + SAMPLES_SUFFIX)
        block = entry.get("anchoring") if entry else None
        if samples_entry is None or not block:
            continue
        scale = block["scale"]
        samples_entry["counter_agreement"] = {
            "counter_source": name,
            "counter_over_samples": scale["scale"],
            "uncertainty": scale["scale_uncertainty"],
            "drifted": block["drifted"],
        }


def read_interval_s(counter: Trace, window: Window) -> float | None:
    """Median spacing of the valid counter reads spanning the window (one beyond each edge)."""
    t = counter.t_ns[np.isfinite(counter.values)]
    lo = max(int(np.searchsorted(t, window.start_ns, side="right")) - 1, 0)
    hi = int(np.searchsorted(t, window.end_ns, side="left")) + 1
    span = t[lo:hi]
    if span.size < 2:
        return None
    return float(np.median(np.diff(span))) / NS_PER_S


def edge_read_interval_ns(counter: Trace, window: Window) -> int:
    """The longest of a counter's read intervals holding a window edge (0: none does).

    A counter read every ~1 s is uncertain at an edge by that interval, not its update period.
    """
    t = counter.t_ns[np.isfinite(counter.values)]
    k = np.searchsorted(t, [window.start_ns, window.end_ns], side="right") - 1
    ok = (k >= 0) & (k < t.size - 1)
    return int(np.max(t[k[ok] + 1] - t[k[ok]])) if np.any(ok) else 0


def _median_weight(curve: AnchoredCurve, window: Window) -> float | None:
    """Median shape weight of the shaped intervals overlapping the window."""
    rows = curve.intervals
    overlap = (rows.end_ns > window.start_ns) & (rows.start_ns < window.end_ns)
    use = overlap & np.isin(rows.kind, SHAPED)
    if not np.any(use):
        return None
    return float(np.median(rows.shape_weight[use]))


def _notes(name: str, samples_name: str, aw: AnchoredWindow) -> list[str]:
    """The anchoring's lines for ``problems`` (uncovered time is the coverage's own problem)."""
    out = []
    cov, scale = aw.coverage, aw.scale
    if cov.linear_s > 0:
        out.append(
            f"{name}: {cov.linear_s:.3g} s of the window at linear counter interpolation (no "
            f"usable {samples_name} there)"
        )
    if cov.extrapolated_s > 0:
        out.append(
            f"note: {name}: {cov.extrapolated_s:.3g} s of the window beyond the first or last "
            f"counter read, {samples_name} scaled by the nearest intervals' scale"
        )
    if scale.drifted() and scale.scale is not None and scale.uncertainty is not None:
        out.append(
            f"note: {name}: {samples_name} disagree with the counter (counter/samples = "
            f"{scale.scale:.4f} +- {scale.uncertainty:.4f} over {scale.intervals} intervals): "
            f"{name} stays counter-true, {samples_name} alone is not to be trusted"
        )
    return out
