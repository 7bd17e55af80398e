"""The Grafana dashboard: importable structure, datasource variable, PromQL that parses.

Every expression is also run against a real Prometheus in
tests/integration/test_prometheus_live.py; here ``promtool check rules`` parses them all
without a server.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from infergy.exporters.metrics import METRICS
from tests.dashboard_exprs import CORE_PANELS, DASHBOARD, load, panels, queries, substitute

DS = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def dash() -> dict:
    return load()


def test_importable_top_level(dash: dict) -> None:
    assert 36 <= dash["schemaVersion"] <= 41
    assert dash["uid"] == "infergy-power" and dash["title"] == "infergy"
    assert dash["id"] is None  # an import must not carry a database id
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["datasource"] == DS
    assert variables["instance"]["includeAll"] and variables["instance"]["allValue"] == ".*"


def test_every_panel_uses_the_datasource_variable(dash: dict) -> None:
    ps = panels(dash)
    assert len(ps) >= 15
    for p in ps:
        assert p["datasource"] == DS, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DS, p["title"]
            assert t["expr"].strip(), p["title"]
            assert 'instance=~"$instance"' in t["expr"], f"{p['title']}: not filtered by instance"
    text = DASHBOARD.read_text()
    assert '"uid": "${datasource}"' in text
    assert not re.search(r'"uid": "(?!\$\{datasource\}|infergy-power|-- Grafana --)', text)


def test_ids_unique_and_layout_without_overlap(dash: dict) -> None:
    all_panels = dash["panels"]
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in all_panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine


def test_the_panels_the_issue_asks_for(dash: dict) -> None:
    titles = {p["title"] for p in panels(dash)}
    assert set(CORE_PANELS) <= titles
    exprs = " ".join(q.expr for q in queries(dash))
    # live power per source with the counter rate beside sampled power
    live = next(p for p in panels(dash) if p["title"].startswith("Power per source"))
    assert "{{device}}" in live["targets"][0]["legendFormat"]
    assert "increase(infergy_energy_joules_total" in exprs and "[1d]" in exprs  # per day
    assert "1000 * infergy_last_session_joules_per_query" in exprs  # mJ/query
    assert "infergy_gpu_clock_event_active" in exprs and "infergy_gpu_power_limit_watts" in exprs
    assert "infergy_meter_up" in exprs and "infergy_meter_errors_total" in exprs
    wall = next(p for p in panels(dash) if p["title"].startswith("Wall vs GPUs"))
    assert len(wall["targets"]) == 3


def test_every_metric_the_dashboard_uses_is_exported(dash: dict) -> None:
    exported = {m.name for m in METRICS}
    used = set(re.findall(r"\binfergy_[a-z_]+\b", " ".join(q.expr for q in queries(dash))))
    assert used and used <= exported, used - exported


def test_substitution_leaves_no_variable() -> None:
    assert substitute('rate(x{instance=~"$instance"}[$__rate_interval])') == (
        'rate(x{instance=~".*"}[4s])'
    )
    with pytest.raises(ValueError, match="unsubstituted"):
        substitute("x[$unknown]")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_every_expr_parses_with_promtool(dash: dict, tmp_path: Path) -> None:
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, q in enumerate(queries(dash)):
        lines += [
            f"      - record: dashboard:q{i}",
            f"        expr: '{q.expr.replace(chr(39), chr(39) * 2)}'",
        ]
    rules = tmp_path / "rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(queries(dash))} rules found" in done.stdout

    # and promtool does catch a broken one (the check can fail)
    rules.write_text(
        "groups:\n  - name: bad\n    rules:\n      - record: bad:q\n        expr: 'sum by (x (y)'\n"
    )
    bad = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert bad.returncode != 0
