"""The PromQL of the Grafana dashboard, ready to run: extraction and variable substitution.

Used by the unit test (structure, ``promtool check rules``) and the integration test (every
expression against a real Prometheus). To check the dashboard against any running target
(``infergy serve`` included)::

    with start_prometheus("127.0.0.1:8080", tmp_path) as prom:
        failures = check_dashboard(prom, require_data=CORE_PANELS)
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboards" / "infergy.json"

# Grafana's built-in interval variables, and the dashboard's own (``$node``, ``$instance``,
# ``$gpu``: all).
SUBSTITUTIONS = {
    "$__rate_interval": "4s",
    "$__interval": "1s",
    "$__range": "5m",
    "$node": ".*",
    "${node}": ".*",
    "$instance": ".*",
    "${instance}": ".*",
    "$gpu": ".*",
    "${gpu}": ".*",
}

CORE_PANELS = (
    "Power per source: counter rate beside sampled power",
    "Wall vs GPUs vs rest of the box",
    "Energy per day",
    "GPU power vs power limit",
    "Samples/s per watt (last session)",
    "mJ per query (last session)",
    "Average power (last session)",
    "Latency (last session)",
    "Throughput (last session)",
    "Sessions",
    "Last session age",
    "Clock events (throttle reasons)",
    "GPU clocks",
    "GPU temperature",
    "GPU power limit",
    "Meters up",
    "Sources",
    "infergy build",
    "MaxQ gain over the default settings (last sweep)",
    "MaxQ recommended settings (last sweep)",
)
"""Panels whose every query must return data from a target with GPUs, an analyzer source, one
finished session and one finished sweep (the others, such as meter errors, may rightly be
empty)."""


@dataclass(frozen=True)
class PanelQuery:
    """One query of one panel (or of a template variable, as a plain series selector)."""

    panel: str
    ref: str
    expr: str


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    """The dashboard JSON."""
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included (rows themselves excluded)."""
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            out += panel.get("panels", [])
        else:
            out.append(panel)
    return out


def substitute(expr: str, values: Mapping[str, str] | None = None) -> str:
    """Replace Grafana variables with values a plain Prometheus query accepts.

    ``values`` overrides some (``{"$node": "edge-01"}``: the dashboard as one node's).
    """
    table = dict(SUBSTITUTIONS)
    for var, value in (values or {}).items():  # $node and ${node} alike
        table[var] = table["${" + var[1:] + "}"] = value
    for var in sorted(table, key=len, reverse=True):
        expr = expr.replace(var, table[var])
    if "$" in expr:
        msg = f"unsubstituted Grafana variable in {expr!r}"
        raise ValueError(msg)
    return expr


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>[^,]+),\s*(?P<label>\w+)\)$")


def queries(dashboard: dict[str, Any], values: Mapping[str, str] | None = None) -> list[PanelQuery]:
    """Every PromQL expression of the dashboard, substituted, panels first then variables."""
    out = [
        PanelQuery(p["title"], t["refId"], substitute(t["expr"], values))
        for p in panels(dashboard)
        for t in p.get("targets", [])
    ]
    for var in dashboard["templating"]["list"]:
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = _LABEL_VALUES.match(query.strip())
        if match is None:
            msg = f"variable {var['name']}: unsupported query {query!r}"
            raise ValueError(msg)
        selector = substitute(match["selector"].strip(), values)
        out.append(PanelQuery(f"variable ${var['name']}", "var", selector))
    return out


class _Prometheus(Protocol):
    def api(self, path: str, **params: str) -> tuple[int, dict[str, Any]]: ...


def check_dashboard(
    prom: _Prometheus,
    *,
    require_data: Iterable[str] = CORE_PANELS,
    path: Path = DASHBOARD,
    timeout_s: float = 20.0,
    values: Mapping[str, str] | None = None,
) -> list[str]:
    """Run every query against ``prom``; the list of failures (empty: all good).

    Each query must parse and succeed (HTTP 200, ``status: success``); those of the panels in
    ``require_data`` (and the variables) must also return data, polled until ``timeout_s``
    (Prometheus needs a few scrapes before rates and ranges have points).
    """
    required = set(require_data)
    pending = queries(load(path), values)
    failures: list[str] = []
    deadline = time.monotonic() + timeout_s
    while pending:
        still_empty = []
        for q in pending:
            status, body = prom.api("query", query=q.expr)
            if status != 200 or body.get("status") != "success":
                failures.append(f"{q.panel} [{q.ref}]: HTTP {status} {body} for {q.expr!r}")
            elif not body["data"]["result"] and (q.panel in required or q.ref == "var"):
                still_empty.append(q)
        pending = still_empty
        if pending and time.monotonic() > deadline:
            failures += [f"{q.panel} [{q.ref}]: no data for {q.expr!r}" for q in pending]
            break
        if pending:
            time.sleep(0.5)
    return failures
