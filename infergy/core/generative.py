"""Generative runs: prefill and decode apart, energy per token, time to first and per output token.

Given a run's :class:`~infergy.core.gen_logs.GenerationLog` (every prefill and decode step,
every sample's tokens) and each source's curve, :func:`generative_block` builds the result's
``generative`` entry: tokens and rates, TTFT/TPOT percentiles, and per source the window energy
split between prefill, decode and the rest (:mod:`infergy.core.phase_split`, conserving the
total), J per output token, J per prefill (prompt) token, J per decode token and tokens/s per
W, each with an uncertainty; decode J/token by the steps' batch; and a coarse timeline of the
phases for the plots.

A phase's energy uncertainty is the source's window uncertainty in proportion to the phase's
share, combined with the split's own (:mod:`infergy.core.phase_split`); the two phases' split
errors are opposite, so their sum keeps the window's uncertainty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from infergy.core.gen_logs import DECODE, PHASE_NAMES, PREFILL, GenerationLog, PhaseLog
from infergy.core.phase_split import (
    SourceSplit,
    busy_per_bin,
    busy_seconds,
    split_energy,
    transitions,
)
from infergy.core.trace import F64, NS_PER_S, Window

TIMELINE_MAX_BINS = 600
"""The phase timeline in a result has at most this many bins (a few kB of JSON)."""
TIMELINE_MIN_BIN_S = 0.01


def _pct(values: F64, scale: float) -> dict[str, float] | None:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    p = np.percentile(finite, [50, 90, 99]) * scale
    return {"p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2])}


def _per(j: float | None, n: float) -> float | None:
    return j / n if j is not None and n > 0 else None


def generative_block(
    sources: Mapping[str, SourceSplit], window: Window, log: GenerationLog
) -> dict[str, object]:
    """The result's ``generative`` entry (see the module docstring)."""
    ph, tk = log.phases, log.tokens
    prefill, decode = ph.of_kind(PREFILL), ph.of_kind(DECODE)
    out_tokens = int(tk.output_tokens.sum())
    prompt_tokens = int(prefill.tokens.sum())
    decode_tokens = int(decode.tokens.sum())
    duration_s = window.duration_s
    changes = transitions(ph)
    per_source = {
        name: _source_figures(s, window, log, out_tokens, prompt_tokens, decode_tokens, changes)
        for name, s in sources.items()
    }
    return {
        "samples": len(tk),
        "input_tokens": int(tk.input_tokens.sum()),
        "output_tokens": out_tokens,
        "prefill_tokens": prompt_tokens,
        "decode_tokens": decode_tokens,
        "output_tokens_per_second": out_tokens / duration_s,
        "prefill_tokens_per_second": prompt_tokens / duration_s,
        "prefill_steps": len(prefill),
        "decode_steps": len(decode),
        "prefill_seconds": float((prefill.end_ns - prefill.start_ns).sum()) / NS_PER_S,
        "decode_seconds": float((decode.end_ns - decode.start_ns).sum()) / NS_PER_S,
        "mean_decode_batch": float(decode.batch.mean()) if len(decode) else None,
        "phase_changes": changes,
        "ttft_ms": _pct(tk.ttft_ns.astype(np.float64), 1e-6),
        "tpot_ms": _pct(tk.tpot_ns, 1e-6),
        "lengths": dict(log.lengths) if log.lengths is not None else None,
        "model": dict(log.model) if log.model is not None else None,
        "sources": per_source,
        "timeline": timeline(ph, window, log.executors),
    }


def _source_figures(  # noqa: PLR0917 (a private helper of generative_block)
    s: SourceSplit,
    window: Window,
    log: GenerationLog,
    out_tokens: int,
    prompt_tokens: int,
    decode_tokens: int,
    changes: int,
) -> dict[str, object]:
    ph = log.phases
    split = split_energy(s, window, ph, log.executors, changes)
    e, u_w = split.energy, s.uncertainty_j

    def unc(part_j: float) -> float | None:
        if u_w is None or e.window_j <= 0:
            return None
        return math.hypot(u_w * part_j / e.window_j, split.split_j)

    u_prefill, u_decode = unc(e.prefill_j), unc(e.decode_j)
    tokens_per_j = out_tokens / e.window_j if e.window_j > 0 else None
    busy = busy_seconds(ph, log.executors)
    return {
        "energy_joules": e.window_j,
        "prefill_joules": e.prefill_j,
        "decode_joules": e.decode_j,
        "other_joules": e.other_j,
        "prefill_joules_uncertainty": u_prefill,
        "decode_joules_uncertainty": u_decode,
        "split_method": split.method,
        "split_uncertainty_joules": split.split_j,
        "prefill_average_watts": e.prefill_j / busy[PREFILL] if busy[PREFILL] > 0 else None,
        "decode_average_watts": e.decode_j / busy[DECODE] if busy[DECODE] > 0 else None,
        "joules_per_output_token": _per(e.window_j, out_tokens),
        "joules_per_output_token_uncertainty": _per(u_w, out_tokens),
        "joules_per_prefill_token": _per(e.prefill_j, prompt_tokens),
        "joules_per_prefill_token_uncertainty": _per(u_prefill, prompt_tokens),
        "joules_per_decode_token": _per(e.decode_j, decode_tokens),
        "joules_per_decode_token_uncertainty": _per(u_decode, decode_tokens),
        "tokens_per_second_per_watt": tokens_per_j,
        "tokens_per_second_per_watt_uncertainty": (
            tokens_per_j * u_w / e.window_j if tokens_per_j is not None and u_w is not None
            else None
        ),
        "resolution_ms": s.resolution_ns / 1e6,
        "decode_by_batch": decode_by_batch(ph, e.per_step_j),
    }  # fmt: skip


def decode_by_batch(ph: PhaseLog, per_step_j: F64) -> list[dict[str, float]]:
    """Decode steps grouped by batch: steps, tokens, joules and J/token of each batch size."""
    m = ph.kind == DECODE
    if not np.any(m):
        return []
    batch, tokens, joules = ph.batch[m], ph.tokens[m], per_step_j[m]
    out = []
    for b in np.unique(batch):
        k = batch == b
        t, j = int(tokens[k].sum()), float(joules[k].sum())
        out.append({"batch": int(b), "steps": int(np.count_nonzero(k)), "tokens": t,
                    "joules": j, "joules_per_token": j / t if t else None})  # fmt: skip
    return out  # type: ignore[return-value]


def timeline(ph: PhaseLog, window: Window, executors: int) -> dict[str, object]:
    """Share of each bin's executor time in prefill and in decode (for the plots)."""
    duration_s = window.duration_s
    bin_s = max(TIMELINE_MIN_BIN_S, duration_s / TIMELINE_MAX_BINS)
    n = max(1, math.ceil(duration_s / bin_s))
    edges = window.start_ns + np.round(np.arange(n + 1) * bin_s * NS_PER_S).astype(np.int64)
    shares: dict[str, list[float]] = {}
    for kind, name in PHASE_NAMES.items():
        m = ph.kind == kind
        a, b = ph.start_ns[m], ph.end_ns[m]
        busy = busy_per_bin(a, b, edges)
        share = busy / (np.diff(edges).astype(np.float64) * max(1, executors))
        shares[name] = [round(float(v), 3) for v in np.clip(share, 0.0, 1.0)]
    return {"start_unix_ns": window.start_ns, "bin_s": bin_s, "prefill_share": shares["prefill"],
            "decode_share": shares["decode"]}  # fmt: skip
