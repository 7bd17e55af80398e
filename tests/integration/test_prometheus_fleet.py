"""The dashboard at fleet scale: one real Prometheus, the shipped config, several nodes.

Three ``/metrics`` targets (tests/integration/metrics_target.py: real infergy meters over
simulated hardware, two fake GPUs and a simulated analyzer ``ac`` each, the real analysis of
examples/single-stream as their last session and a real MaxQ record as their last sweep),
found by the shipped deploy/prometheus/prometheus.yml through file-based service discovery
(its intervals shortened and its targets folder moved; the target file as
infergy-nodes.example.json shapes it, labelled ``node``). The dashboard's ``$node`` variable
lists the three; with ``$node`` (and the ``$instance`` it leads to) set to each in turn, every
core panel returns data; ``$gpu`` narrows the GPU panels; and the series count per node is the budget
docs/fleet.md states.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from infergy.core.clock import SessionClock
from infergy.meters.nvml import NvmlMeter
from infergy.meters.sim import PowerModel, SimMeter
from tests.dashboard_exprs import CORE_PANELS, check_dashboard
from tests.fake_gpu import FakeGpu
from tests.integration.metrics_target import MetricsTarget
from tests.integration.prom_server import PrometheusServer, require_prometheus
from tests.integration.test_prometheus_live import SWEEP, analyzed_result
from tests.unit.meters.test_nvml import FAST

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "prometheus" / "prometheus.yml"
NODES = ("edge-01", "edge-02", "edge-03")
SERIES_BUDGET = 150
"""docs/fleet.md's series per node with 2 GPUs and one analyzer (a finished session and sweep)."""


def _config(targets_dir: Path) -> str:
    text = SHIPPED.read_text(encoding="utf-8")
    for old, new in (("scrape_interval: 15s", "scrape_interval: 1s"),
                     ("evaluation_interval: 15s", "evaluation_interval: 1s"),
                     ("scrape_timeout: 10s", "scrape_timeout: 1s"),
                     ("/etc/prometheus/infergy-nodes", str(targets_dir))):  # fmt: skip
        assert old in text, f"the shipped config no longer says {old!r}"
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def _node(result: dict[str, object]) -> Iterator[tuple[MetricsTarget, NvmlMeter]]:
    clock = SessionClock()
    analyzer = SimMeter(clock=clock, model=PowerModel(300.0, 700.0, period_s=0.1), source="ac")
    nvml = NvmlMeter([FakeGpu(index=0), FakeGpu(index=1)], clock=clock, config=FAST)
    try:
        with MetricsTarget([nvml, analyzer], clock=clock, poll_interval_s=0.25) as target:
            target.telemetry.session_started()
            target.telemetry.session_finished(result)
            target.telemetry.sweep_finished(json.loads(SWEEP.read_text(encoding="utf-8")))
            yield target, nvml
    finally:
        nvml.close()


def test_the_dashboard_shows_each_node_of_a_fleet(tmp_path: Path) -> None:
    binary = require_prometheus()
    result = analyzed_result()
    with contextlib.ExitStack() as stack:
        targets = [stack.enter_context(_node(result))[0] for _ in NODES]
        sd = tmp_path / "infergy-nodes"
        sd.mkdir()
        entries = [{"targets": [t.address], "labels": {"node": n, "rack": "r1"}}
                   for n, t in zip(NODES, targets, strict=True)]  # fmt: skip
        (sd / "lab.json").write_text(json.dumps(entries))
        prom = stack.enter_context(
            PrometheusServer(binary, tmp_path / "prom", "file_sd", config=_config(sd)).start()
        )
        every = f'count(count by (node) (up{{job="infergy"}} == 1)) == {len(NODES)}'
        prom.wait_for_data(every, timeout_s=30)  # each node scraped once at least
        assert not check_dashboard(prom, timeout_s=30)  # every node: $node all
        for node, target in zip(NODES, targets, strict=True):  # as Grafana resolves $instance
            chosen = {"$node": node, "$instance": target.address}  # a regex matching it
            failures = check_dashboard(prom, require_data=CORE_PANELS, timeout_s=10,
                                       values=chosen)  # fmt: skip
            assert not failures, "\n".join(failures)
        # $instance follows $node, and $gpu narrows the GPU panels
        mine = prom.query('group by (instance) (infergy_build_info{node="edge-02"})')
        assert [m["metric"]["instance"] for m in mine] == [targets[1].address], mine
        gpu1 = prom.query('infergy_gpu_power_limit_watts{instance=~".*", gpu=~"gpu1"}')
        assert sorted(m["metric"]["node"] for m in gpu1) == list(NODES), gpu1
        # the cardinality budget: the same count for each node, within docs/fleet.md's figure
        counts = prom.query('count by (node) ({job="infergy", __name__=~"infergy_.*"})')
        per_node = {c["metric"]["node"]: int(c["value"][1]) for c in counts}
        assert set(per_node) == set(NODES) and len(set(per_node.values())) == 1, per_node
        assert per_node["edge-01"] <= SERIES_BUDGET, per_node
