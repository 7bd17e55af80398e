"""A generative result's screen part: tokens and their latencies, energy per token by phase.

From the result's ``generative`` block (:mod:`infergy.core.generative`): one line of tokens,
tokens/s, TTFT and TPOT percentiles, then a table per power source of mJ per output token, per
prefill (prompt) token and per decode token, and tokens/s per watt, each with its uncertainty,
and how the window's energy was split between the phases (``resolved``: the samples resolve
the phases; ``fitted``: a per-phase power fitted to the samples; ``time-share``: the samples
are too coarse and the split follows the phases' time, its uncertainty the smaller phase's energy).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from infergy.cli.console_cells import num, sig, simulated_caption, source_cell, source_width

COLUMNS = (
    ("mJ/token", "joules_per_output_token", 1e3),
    ("mJ/prefill", "joules_per_prefill_token", 1e3),
    ("mJ/decode", "joules_per_decode_token", 1e3),
    ("tokens/s/W", "tokens_per_second_per_watt", 1.0),
)
"""(heading, key, scale): each figure's uncertainty is ``<key>_uncertainty``."""


def _pm(value: float | None, u: float | None, scale: float) -> str:
    if value is None:
        return "—"
    return sig(value * scale, 3) + ("" if u is None else f"±{sig(u * scale, 2)}")


def render_generative(
    console: Console, gen: Mapping[str, Any], power: Mapping[str, Mapping[str, Any]]
) -> None:
    """The tokens line and the per-token energy table (see the module docstring)."""
    ttft, tpot = gen.get("ttft_ms") or {}, gen.get("tpot_ms") or {}
    console.print(
        Text.assemble(
            ("tokens in/out ", "dim"),
            f"{num(gen.get('input_tokens'), ',')} / {num(gen.get('output_tokens'), ',')}",
            ("  tokens/s ", "dim"),
            num(gen.get("output_tokens_per_second"), ",.1f"),
            ("  TTFT p50/p99 ", "dim"),
            " / ".join(num(ttft.get(k), ".1f") for k in ("p50", "p99")) + " ms",
            ("  TPOT p50/p99 ", "dim"),
            " / ".join(num(tpot.get(k), ".2f") for k in ("p50", "p99")) + " ms",
            ("  decode batch ", "dim"),
            num(gen.get("mean_decode_batch"), ".1f"),
        )
    )
    sources: Mapping[str, Mapping[str, Any]] = gen.get("sources") or {}
    if not sources:
        return
    t = Table(
        title="Energy per token (prefill: per prompt token; decode: per token made)",
        title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
        caption=simulated_caption(power), caption_justify="left", caption_style="magenta",
    )  # fmt: skip
    t.add_column("source", no_wrap=True, min_width=source_width(power))
    for title, _, _ in COLUMNS:
        t.add_column(title, justify="right")
    t.add_column("split", no_wrap=True)
    for name, s in sources.items():
        row = [_pm(s.get(k), s.get(f"{k}_uncertainty"), scale) for _, k, scale in COLUMNS]
        row.append(str(s.get("split_method") or "—"))
        t.add_row(source_cell(name, power.get(name)), *row)
    console.print(t)
