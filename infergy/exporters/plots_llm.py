"""A generative run's plot: power over the window with its prefill and decode phases shaded.

``llm_phases.png``: each source's power (as the power plot draws it) above a strip of the
phases' share of the executors' time per bin (the result's ``generative.timeline``: prefill
orange, decode blue); where most of a bin was prefill or decode, the power axis is tinted the
same. Simulated sources are labelled SIMULATED in the legend, as in every plot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

PREFILL_COLOR = "tab:orange"
DECODE_COLOR = "tab:blue"
TINT_FROM = 0.5
"""A bin is tinted by a phase when that phase filled more than this share of it."""


def phase_figure(
    plt: Any,
    timeline: Mapping[str, Any],
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    window_start_ns: int,
    label: str,
) -> Any:
    """The figure: ``series`` is (seconds from the window's start, watts) by legend label."""
    fig, (ax, strip) = plt.subplots(
        2, 1, figsize=(10, 5.2), sharex=True, gridspec_kw={"height_ratios": [4, 1]}
    )
    bin_s = float(timeline["bin_s"])
    prefill = np.asarray(timeline["prefill_share"], dtype=np.float64)
    decode = np.asarray(timeline["decode_share"], dtype=np.float64)
    offset_s = (int(timeline["start_unix_ns"]) - window_start_ns) / 1e9
    edges = offset_s + np.arange(prefill.size + 1) * bin_s
    for share, color in ((prefill, PREFILL_COLOR), (decode, DECODE_COLOR)):
        for i in np.flatnonzero(share > TINT_FROM):
            ax.axvspan(edges[i], edges[i + 1], color=color, alpha=0.12, lw=0)
    for name, (x, w) in series.items():
        ax.plot(x, w, lw=0.8, label=name)
    ax.set_ylabel("power (W)")
    ax.set_title(label, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    strip.stairs(prefill, edges, fill=True, color=PREFILL_COLOR, alpha=0.7, label="prefill")
    strip.stairs(prefill + decode, edges, baseline=prefill, fill=True, color=DECODE_COLOR,
                 alpha=0.7, label="decode")  # fmt: skip
    strip.set_ylim(0, 1)
    strip.set_ylabel("share")
    strip.set_xlabel("time from window start (s)")
    strip.legend(fontsize=7, loc="upper right", ncol=2)
    return fig
