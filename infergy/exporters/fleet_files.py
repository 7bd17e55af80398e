"""A fleet campaign's comparison as files: ``comparison.csv`` and ``comparison.json``.

The rows come from :mod:`infergy.daemon.fleet.comparison` (one per node). In the CSV an
absent figure is an empty cell, never 0; when any row's source is simulated, a first line
``# SIMULATED ...`` says so (as infergy's trace CSVs do) and the ``simulated`` column says
which. The JSON carries the campaign's identity and the same rows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CSV_NAME = "comparison.csv"
JSON_NAME = "comparison.json"


def write_comparison(
    folder: Path,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    campaign: Mapping[str, Any],
) -> tuple[Path, Path]:
    """Write both files into ``folder``; their paths (CSV, JSON)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    simulated = sorted(str(r.get("node")) for r in rows if r.get("simulated"))
    if simulated:
        text.write(f"# SIMULATED sources, not measurements: {', '.join(simulated)}\n")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    csv_path = folder / CSV_NAME
    csv_path.write_text(text.getvalue(), encoding="utf-8")
    json_path = folder / JSON_NAME
    body = {"campaign": dict(campaign), "columns": list(columns), "rows": [dict(r) for r in rows]}
    json_path.write_text(json.dumps(body, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return csv_path, json_path


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)
