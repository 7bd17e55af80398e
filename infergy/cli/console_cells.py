"""Table cells shared by the screen's tables: numbers, and source names starred when simulated."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rich.text import Text

SIMULATED_STAR = "*"
"""The tables' mark of a simulated source, explained in the table's caption."""


def num(value: float | None, fmt: str = ".4g", unit: str = "") -> str:
    """``value`` in ``fmt`` with ``unit``; an absent figure is a dash, never 0."""
    if value is None:
        return "—"
    return f"{value:{fmt}}{unit}"


def sig(value: float | None, digits: int = 4) -> str:
    """``digits`` significant digits without an exponent (12,345 / 6.25 / 0.0123)."""
    if value is None:
        return "—"
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def source_width(power: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Wide enough for every source cell: a mark is never cut off."""
    return max((len(source_cell(n, p)) for n, p in (power or {}).items()), default=6)


def source_cell(name: str, power: Mapping[str, Any] | None) -> Text:
    """The source's name, starred when its readings are not measurements (see the caption)."""
    if power is not None and power.get("simulated"):
        return Text.assemble(name, (SIMULATED_STAR, "bold magenta"))
    return Text(name)


def simulated_caption(power: Mapping[str, Mapping[str, Any]]) -> str | None:
    """A table's caption naming its simulated sources (None: there are none)."""
    names = [n for n, p in power.items() if p.get("simulated")]
    if not names:
        return None
    return f"{SIMULATED_STAR} SIMULATED, not measurements: {', '.join(names)}"
