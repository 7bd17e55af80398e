"""A real Prometheus scraping infergy's collector: live power, last-session gauges, dashboard.

The target (tests/integration/metrics_target.py) runs real infergy meters over simulated
hardware (an NvmlMeter over two fake GPUs, a simulated 10-Hz analyzer source ``ac`` and a
simulated ``gpu2``), LiveTelemetry and an aiohttp ``/metrics``. The finished session is the
real result of ``infergy analyze --json`` on examples/single-stream (its power is simulated,
examples/README.md), and the finished sweep is a real MaxQ record on a simulated H200
(tests/fixtures/maxq). One Prometheus (2.42, Debian) scrapes every second; every expression
of dashboards/infergy.json is then run through its HTTP API.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infergy.core.clock import SessionClock
from infergy.meters.nvml import NvmlMeter
from infergy.meters.sim import PowerModel, SimMeter
from tests.dashboard_exprs import CORE_PANELS, DASHBOARD, check_dashboard, panels
from tests.fake_gpu import FakeGpu
from tests.integration.metrics_target import MetricsTarget
from tests.integration.prom_server import (
    PrometheusServer,
    require_prometheus,
    start_prometheus,
    values,
)
from tests.unit.meters.test_nvml import FAST

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SWEEP = ROOT / "tests" / "fixtures" / "maxq" / "sweep_h200_simulated.json"
"""A real sweep's record on a simulated H200 (tests/fixtures/maxq/README.md)."""


def analyzed_result() -> dict[str, Any]:
    """The real analysis of the shipped single-stream example (LoadGen + simulated power)."""
    ex = ROOT / "examples" / "single-stream"
    done = subprocess.run(
        [sys.executable, "-m", "infergy", "analyze", "--json",
         "--power", f"gpu0={ex / 'gpu0_energy.csv'}", "--power", f"ac={ex / 'ptd_log.txt'}",
         "--loadgen-log", str(ex), "--queries", str(ex / "queries.csv"), "--align", "auto"],
        capture_output=True, text=True, check=False, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result | {"model": "example-model", "backend": "onnxruntime"}


class Rig:
    def __init__(
        self, target: MetricsTarget, prom: PrometheusServer, result: dict[str, Any]
    ) -> None:
        self.target, self.prom, self.result = target, prom, result


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    require_prometheus()
    result = analyzed_result()
    clock = SessionClock()
    analyzer = SimMeter(clock=clock, model=PowerModel(300.0, 700.0, period_s=0.1), source="ac")
    analyzer.set_activity(0.5)  # 500 W, simulated
    sim_gpu = SimMeter(clock=clock, model=PowerModel(60.0, 300.0, period_s=0.02), source="gpu2")
    nvml = NvmlMeter([FakeGpu(index=0), FakeGpu(index=1)], clock=clock, config=FAST)
    try:
        with MetricsTarget([nvml, analyzer, sim_gpu], clock=clock, poll_interval_s=0.25) as target:
            target.telemetry.session_started()
            target.telemetry.session_finished(result)
            target.telemetry.sweep_finished(json.loads(SWEEP.read_text(encoding="utf-8")))
            with start_prometheus(target.address, tmp_path_factory.mktemp("prometheus")) as prom:
                yield Rig(target, prom, result)
    finally:
        nvml.close()


def test_prometheus_scrapes_openmetrics_cleanly(rig: Rig) -> None:
    rig.prom.wait_for_data('up{job="infergy"} == 1')
    _status, targets = rig.prom.api("targets")
    (active,) = targets["data"]["activeTargets"]
    assert active["health"] == "up" and active["lastError"] == "", active
    assert rig.prom.wait_for_data("infergy_build_info")


def test_live_power_through_prometheus(rig: Rig) -> None:
    power = values(rig.prom.wait_for_data('infergy_power_watts{source="ac"}'))
    assert power == {(("device", "mean"), ("source", "ac")): pytest.approx(500.0)}
    gpu0 = values(rig.prom.wait_for_data('infergy_power_watts{source="gpu0"}'))
    assert {dict(k)["device"] for k in gpu0} == {"counter", "samples", "avg"}
    for watts in gpu0.values():  # the fake GPU: 200 W +- 80 W
        assert 110.0 < watts < 290.0
    sim = values(rig.prom.wait_for_data('infergy_power_watts{source="gpu2"}'))
    assert list(sim.values()) == [pytest.approx(60.0)]
    # the energy counter's rate as Prometheus computes it matches the fake GPU's mean power
    # (once the series is older than the range: rate() divides by the whole range)
    energy = 'infergy_energy_joules_total{source="gpu0",device="counter"}'
    rig.prom.wait_for_data(f"count_over_time({energy}[7s]) >= 7", timeout_s=30)
    rate = rig.prom.query(f"rate({energy}[5s])")
    assert 110.0 < float(rate[0]["value"][1]) < 290.0
    limit = values(rig.prom.wait_for_data("infergy_gpu_power_limit_watts"))
    assert set(limit.values()) == {700.0} and len(limit) == 2


def test_last_session_gauges_through_prometheus(rig: Rig) -> None:
    r = rig.result
    key = 'scenario="single-stream",model="example-model",backend="onnxruntime"'
    sps = rig.prom.wait_for_data(f"infergy_last_session_samples_per_second{{{key}}}")
    assert float(sps[0]["value"][1]) == pytest.approx(r["performance"]["samples_per_second"])
    per_watt = values(
        rig.prom.wait_for_data(f"infergy_last_session_samples_per_second_per_watt{{{key}}}")
    )
    expected = {
        source: e["samples_per_second_per_watt"]
        for source, e in r["efficiency"].items()
        if e.get("samples_per_second_per_watt") is not None
    }
    got = {dict(k)["source"]: v for k, v in per_watt.items()}
    assert got == pytest.approx(expected) and "gpu0" in got and "ac" in got
    mj = values(rig.prom.wait_for_data(f"1000 * infergy_last_session_joules_per_query{{{key}}}"))
    assert {dict(k)["source"]: v for k, v in mj.items()}["gpu0"] == pytest.approx(
        1000 * r["efficiency"]["gpu0"]["joules_per_query"]
    )
    p99 = rig.prom.wait_for_data(f'infergy_last_session_latency_seconds{{{key},quantile="0.99"}}')
    assert float(p99[0]["value"][1]) == pytest.approx(r["performance"]["latency_ms"]["p99"] / 1000)
    sessions = values(rig.prom.wait_for_data("infergy_sessions_total"))
    assert sessions[(("status", "ok"),)] == 1.0 or sessions[(("status", "degraded"),)] == 1.0
    queries = rig.prom.wait_for_data('infergy_queries_total{scenario="single-stream"}')
    assert float(queries[0]["value"][1]) == r["performance"]["queries"]


def test_every_dashboard_query_runs_against_prometheus(rig: Rig) -> None:
    failures = check_dashboard(rig.prom, timeout_s=30)
    assert not failures, "\n".join(failures)


def test_a_broken_query_is_reported(rig: Rig) -> None:
    """The dashboard check can fail: Prometheus rejects bad PromQL with HTTP 400."""
    status, body = rig.prom.api("query", query="sum by (source (infergy_power_watts)")
    assert status == 400 and body["status"] == "error"


def test_the_dashboard_check_fails_on_bad_or_empty_queries(rig: Rig, tmp_path: Path) -> None:
    dash = json.loads(DASHBOARD.read_text())
    core = [p for p in panels(dash) if p["title"] in CORE_PANELS]
    core[0]["targets"][0]["expr"] = "sum by (source (infergy_power_watts)"  # does not parse
    core[1]["targets"][0]["expr"] = 'infergy_power_watts{source="no-such-source"}'  # empty
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(dash))
    failures = check_dashboard(rig.prom, path=broken, timeout_s=1)
    assert len(failures) == 2, failures
    assert "HTTP 400" in failures[0] and "no data" in failures[1]
