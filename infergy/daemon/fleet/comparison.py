"""A campaign's comparison: one row per node, from its result or sweep record.

A run campaign's row has the node's headline source (wall power first, then the GPUs' sum:
:func:`infergy.core.compare.headline_source`, or the one asked for), samples/s, W,
samples/s/W and mJ/query (time-weighted, ``1000 x joules_per_query``), each with its
uncertainty as ``infergy runs compare`` derives it. A MaxQ campaign's row has the node's
recommended settings, the objective's value and its gain over the default settings with the
95 % interval. Nodes without a result have their phase and errors and ``None`` figures.
Simulated sources are marked (``simulated``), never shown as measurements.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infergy.core.compare import headline_source, source_figures
from infergy.daemon.fleet.campaign import Campaign

RUN_COLUMNS = (
    "node", "phase", "status", "run_id", "scenario", "source", "simulated",
    "samples_per_second", "average_watts", "average_watts_uncertainty",
    "samples_per_second_per_watt", "samples_per_second_per_watt_uncertainty",
    "millijoules_per_query", "millijoules_per_query_uncertainty",
    "version", "config_digest", "errors",
)  # fmt: skip
MAXQ_COLUMNS = (
    "node", "phase", "status", "run_id", "simulated", "power_limit_w", "sm_clock_mhz",
    "mem_clock_mhz", "batch_size", "precision", "objective", "unit", "value",
    "value_uncertainty", "gain_relative", "gain_low", "gain_high", "significant", "summary",
    "version", "config_digest", "errors",
)  # fmt: skip


def columns(kind: str) -> tuple[str, ...]:
    """The columns of a ``run`` or ``maxq`` comparison, in order."""
    return MAXQ_COLUMNS if kind == "maxq" else RUN_COLUMNS


def comparison_rows(
    campaign: Campaign, results: Mapping[str, Mapping[str, Any]], *, source: str | None = None
) -> list[dict[str, Any]]:
    """One row per node (sorted by name); ``results`` maps nodes to their result."""
    rows = []
    for name in sorted(campaign.nodes):
        nr = campaign.nodes[name]
        row: dict[str, Any] = dict.fromkeys(columns(campaign.kind))
        row |= {
            "node": name, "phase": nr.phase, "status": nr.result_status, "run_id": nr.run_id,
            "version": nr.version, "config_digest": nr.config_digest,
            "errors": "; ".join(nr.errors) or None,
        }  # fmt: skip
        result = results.get(name)
        if result is not None:
            row |= _maxq(result) if campaign.kind == "maxq" else _run(result, source)
        rows.append(row)
    return rows


def _run(result: Mapping[str, Any], asked: str | None) -> dict[str, Any]:
    source = asked or headline_source(result)
    if source is None:
        return {"scenario": result.get("scenario")}
    figures = source_figures(result, source)
    power = (result.get("power") or {}).get(source) or {}
    j, uj = figures["joules_per_query"], figures["joules_per_query_uncertainty"]
    return {
        "scenario": result.get("scenario"),
        "source": source,
        "simulated": bool(power.get("simulated")) if isinstance(power, Mapping) else None,
        "samples_per_second": figures["samples_per_second"],
        "average_watts": figures["average_watts"],
        "average_watts_uncertainty": figures["average_watts_uncertainty"],
        "samples_per_second_per_watt": figures["samples_per_second_per_watt"],
        "samples_per_second_per_watt_uncertainty": figures[
            "samples_per_second_per_watt_uncertainty"
        ],
        "millijoules_per_query": None if j is None else 1e3 * j,
        "millijoules_per_query_uncertainty": None if uj is None else 1e3 * uj,
    }


def _maxq(record: Mapping[str, Any]) -> dict[str, Any]:
    rec = record.get("recommendation")
    out: dict[str, Any] = {"simulated": bool(record.get("simulated"))}
    if not isinstance(rec, Mapping):
        return out
    point = rec.get("point") if isinstance(rec.get("point"), Mapping) else {}
    gain = rec.get("gain") if isinstance(rec.get("gain"), Mapping) else {}
    assert isinstance(point, Mapping) and isinstance(gain, Mapping)
    return out | {
        "power_limit_w": point.get("power_limit_w"),
        "sm_clock_mhz": point.get("sm_clock_mhz"),
        "mem_clock_mhz": point.get("mem_clock_mhz"),
        "batch_size": point.get("batch_size"),
        "precision": point.get("precision"),
        "objective": rec.get("objective"),
        "unit": rec.get("unit"),
        "value": rec.get("value"),
        "value_uncertainty": rec.get("value_uncertainty"),
        "gain_relative": gain.get("relative"),
        "gain_low": gain.get("low"),
        "gain_high": gain.get("high"),
        "significant": gain.get("significant"),
        "summary": rec.get("summary"),
    }
