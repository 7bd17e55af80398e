"""The run listing of the results store (:meth:`infergy.store.Store.list_runs`).

A stored run's row plus the headline figures read out of its result JSON. The reading is
lenient: a listing shows what it can, and a damaged result is reported by ``get_result``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from infergy.core.compare import headline_rank

STORED_STATUSES = ("ok", "degraded", "failed", "aborted", "running")
"""Every status a stored run can have (``running``: a checkpoint of a run in progress)."""


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """A stored run's identity and headline numbers, ``None`` where absent (``list_runs``)."""

    run_id: str
    created_unix_ns: int
    status: str
    scenario: str | None
    model: str | None
    backend: str | None
    samples_per_second: float | None
    headline_source: str | None
    """The source the two efficiency figures below are of: ``ac`` first (``headline_rank``)."""
    samples_per_second_per_watt: float | None
    joules_per_query: float | None
    average_watts: float | None = None
    """The headline source's time-weighted mean power over the window."""
    millijoules_per_query_mlperf: float | None = None
    """MLPerf's SingleStream/MultiStream figure of the headline source (``None`` elsewhere)."""
    headline_simulated: bool = False
    """Whether the headline source is simulated (its figures are no measurement)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``infergy runs --json``)."""
        return dataclasses.asdict(self)


def summarize(row: tuple[str, int, str, str | None, str | None, str | None, str]) -> RunSummary:
    """The summary of a ``runs`` row: its columns up to ``backend``, then ``result_json``."""
    try:
        result = json.loads(row[6])
    except ValueError:  # a listing shows what it can; get_result reports the damage
        result = {}
    efficiency = _section(result, "efficiency")
    source = min(efficiency, key=headline_rank, default=None)
    figures = _section(efficiency, source) if source is not None else {}
    power = _section(_section(result, "power"), source) if source is not None else {}
    return RunSummary(
        *row[:6],  # run_id, created_unix_ns, status, scenario, model, backend
        samples_per_second=_number(_section(result, "performance"), "samples_per_second"),
        headline_source=source,
        samples_per_second_per_watt=_number(figures, "samples_per_second_per_watt"),
        joules_per_query=_number(figures, "joules_per_query"),
        average_watts=_number(power, "average_watts"),
        millijoules_per_query_mlperf=_number(figures, "millijoules_per_query_mlperf"),
        headline_simulated=power.get("simulated") is True or power.get("kind") == "sim",
    )


def _section(data: object, key: str) -> dict[str, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def _number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
