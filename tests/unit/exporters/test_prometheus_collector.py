"""The Prometheus collector over LiveTelemetry: values, names, staleness, sessions, promtool.

Meters here are a scripted :class:`~infergy.meters.base.Meter` (samples placed by the test at
known times, so every exported figure has an exact expected value), real ``SimMeter``s and a
real ``NvmlMeter`` over fake GPUs (tests/fake_gpu.py) for the GPU context.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from infergy.core.clock import SessionClock
from infergy.core.trace import NS_PER_S, Semantics, Trace
from infergy.exporters.metrics import METRICS
from infergy.exporters.prometheus import TelemetryCollector, build_registry, render_metrics
from infergy.exporters.telemetry import LiveTelemetry, Telemetry, TelemetrySource
from infergy.meters.base import MeterHealth, RingBuffer, SourceInfo
from infergy.meters.nvml import NvmlMeter
from infergy.meters.sim import PowerModel, SimMeter
from tests.fake_gpu import FakeGpu
from tests.unit.meters.test_nvml import FAST

CONTRACT = {  # ARCHITECTURE.md, "Live exports (contract)", plus infergy_source_info
    "infergy_power_watts": ("source", "device"),
    "infergy_energy_joules_total": ("source", "device"),
    "infergy_gpu_power_limit_watts": ("gpu",),
    "infergy_gpu_clock_hertz": ("gpu", "domain"),
    "infergy_gpu_temperature_celsius": ("gpu",),
    "infergy_gpu_clock_event_active": ("gpu", "reason"),
    "infergy_meter_up": ("source", "device"),
    "infergy_meter_errors_total": ("source", "kind"),
    "infergy_session_running": (),
    "infergy_sessions_total": ("status",),
    "infergy_queries_total": ("scenario",),
    "infergy_samples_total": ("scenario",),
    "infergy_last_session_samples_per_second": ("scenario", "model", "backend"),
    "infergy_last_session_average_watts": ("scenario", "model", "backend", "source"),
    "infergy_last_session_samples_per_second_per_watt": ("scenario", "model", "backend", "source"),
    "infergy_last_session_joules_per_query": ("scenario", "model", "backend", "source"),
    "infergy_last_session_joules_per_sample": ("scenario", "model", "backend", "source"),
    "infergy_last_session_loadgen_valid": ("scenario", "model", "backend"),
    # docs/generative.md, "Live exports"
    **{
        f"infergy_last_session_{f}": ("scenario", "model", "backend", "source")
        for f in (
            "joules_per_output_token",
            "joules_per_output_token_uncertainty",
            "joules_per_prefill_token",
            "joules_per_decode_token",
            "tokens_per_second_per_watt",
        )
    },
    "infergy_last_session_latency_seconds": ("scenario", "model", "backend", "quantile"),
    "infergy_last_session_timestamp_seconds": ("scenario", "model", "backend"),
    "infergy_build_info": ("version", "python_version"),
    "infergy_source_info": ("source", "device", "meter_source", "kind", "semantics", "simulated"),
    # docs/maxq.md, "Live exports"
    "infergy_maxq_sweeps_total": ("status",),
    "infergy_maxq_last_sweep_gain_ratio": ("objective", "simulated", "bound"),
    "infergy_maxq_last_sweep_significant": ("objective", "simulated"),
    "infergy_maxq_last_sweep_objective": ("objective", "simulated", "settings"),
    "infergy_maxq_last_sweep_recommended_power_limit_watts": ("objective", "simulated"),
    "infergy_maxq_last_sweep_recommended_batch_size": ("objective", "simulated"),
    "infergy_maxq_last_sweep_points": ("objective", "simulated", "kind"),
    "infergy_maxq_last_sweep_timestamp_seconds": ("objective", "simulated"),
}

RESULT: dict[str, Any] = {
    "schema_version": 1, "run_id": "r1", "status": "ok", "scenario": "offline",
    "backend": "onnxruntime", "model": "resnet50",
    "window": {"start_unix_ns": 1_700_000_000_000_000_000, "end_unix_ns": 1_700_000_010_000_000_000},
    "performance": {"queries": 1, "samples": 2400, "samples_per_second": 240.0,
                    "latency_ms": {"p50": 4.0, "p90": 5.5, "p99": None}},
    "power": {"gpu0": {"average_watts": 300.0}, "ac": {"average_watts": 480.0}},
    "efficiency": {"gpu0": {"samples_per_second_per_watt": 0.8, "joules_per_query": 1.25,
                            "joules_per_sample": 1.25 / 2400},
                   "ac": {"samples_per_second_per_watt": 0.5, "joules_per_query": None}},
    "loadgen": {"validity": "VALID"},
}  # fmt: skip


class ScriptedMeter:
    """A Meter whose samples the test appends (a fake at the Meter Protocol boundary)."""

    name = "scripted"

    def __init__(self, infos: list[SourceInfo]) -> None:
        self.infos = infos
        self.buffers = {i.name: RingBuffer(1 << 12) for i in infos}
        self.health_by_source = {i.name: MeterHealth(up=True) for i in infos}
        self.snapshots = 0

    def describe(self) -> list[SourceInfo]:
        return self.infos

    async def run(self) -> None:
        await asyncio.Event().wait()

    def snapshot(
        self, source: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> Trace:
        self.snapshots += 1
        info = next(i for i in self.infos if i.name == source)
        return self.buffers[source].trace(info.semantics, info.nominal_period_ns, start_ns, end_ns)

    def health(self) -> Mapping[str, MeterHealth]:
        return self.health_by_source


def info(name: str, semantics: Semantics, period_s: float, kind: str = "nvml") -> SourceInfo:
    unit = "J" if semantics is Semantics.COUNTER else "W"
    return SourceInfo(name, kind, "test device", semantics, round(period_s * NS_PER_S), unit)


def sample(registry: Any, name: str, **labels: str) -> float | None:
    value: float | None = registry.get_sample_value(name, labels)
    return value


@pytest.fixture
def scripted() -> tuple[ScriptedMeter, LiveTelemetry, SessionClock]:
    clock = SessionClock()
    meter = ScriptedMeter(
        [
            info("gpu0", Semantics.COUNTER, 0.1),
            info("gpu0.samples", Semantics.INSTANT, 0.02),
            info("ac", Semantics.INTERVAL_MEAN, 1.0, kind="analyzer"),
        ]
    )
    telemetry = LiveTelemetry([meter], clock=clock)
    now = clock.now_ns()
    t = now + np.arange(-3000, 1, 20) * 1_000_000  # the last 3 s, every 20 ms; 2 s counted
    meter.buffers["gpu0"].extend(t[::5], 5000.0 + 250.0 * (t[::5] - now) / NS_PER_S)
    meter.buffers["gpu0.samples"].extend(t, np.full(t.size, 240.0))
    meter.buffers["ac"].extend(t[::50], np.full(t[::50].size, 480.0))
    telemetry.started_ns = now - 2 * NS_PER_S  # as if started 2 s ago: earlier samples don't count
    return meter, telemetry, clock


def test_power_energy_and_health_values(
    scripted: tuple[ScriptedMeter, LiveTelemetry, SessionClock],
) -> None:
    meter, telemetry, _clock = scripted
    registry = build_registry(telemetry)
    assert (
        sample(registry, "infergy_power_watts", source="gpu0", device="counter") is None
    )  # no poll yet
    telemetry.poll()
    assert sample(
        registry, "infergy_power_watts", source="gpu0", device="counter"
    ) == pytest.approx(250.0)
    assert sample(
        registry, "infergy_power_watts", source="gpu0", device="samples"
    ) == pytest.approx(240.0)
    assert sample(registry, "infergy_power_watts", source="ac", device="mean") == pytest.approx(
        480.0
    )
    assert sample(
        registry, "infergy_energy_joules_total", source="gpu0", device="counter"
    ) == pytest.approx(500.0)
    assert sample(
        registry, "infergy_energy_joules_total", source="gpu0", device="samples"
    ) == pytest.approx(480.0)
    assert sample(registry, "infergy_meter_up", source="gpu0", device="counter") == 1.0
    assert sample(registry, "infergy_source_info", source="ac", device="mean", meter_source="ac",
                  kind="analyzer", semantics="interval_mean", simulated="false") == 1.0  # fmt: skip
    meter.health_by_source["gpu0"].error("gpu_lost", "lost")
    meter.health_by_source["gpu0.samples"].error("gpu_lost", "lost")
    meter.health_by_source["gpu0"].up = False
    telemetry.poll()
    assert sample(registry, "infergy_meter_errors_total", source="gpu0", kind="gpu_lost") == 2.0
    assert sample(registry, "infergy_meter_up", source="gpu0", device="counter") == 0.0
    # each poll reads only the new samples: a second poll adds nothing
    assert sample(
        registry, "infergy_energy_joules_total", source="gpu0", device="counter"
    ) == pytest.approx(500.0)


def test_stale_source_shows_no_power_and_is_down(
    scripted: tuple[ScriptedMeter, LiveTelemetry, SessionClock],
) -> None:
    meter, _telemetry, clock = scripted
    telemetry = LiveTelemetry([meter], clock=clock, stale_s=0.5)
    telemetry.started_ns -= 10 * NS_PER_S
    old = (
        clock.now_ns() - 4 * NS_PER_S
    )  # gpu0.samples' newest sample is 4 s old (> 0.5 s, > 3 x 20 ms)
    meter.buffers["gpu0.samples"] = RingBuffer(64)
    meter.buffers["gpu0.samples"].extend(old + np.arange(3) * 20_000_000, [100.0, 100.0, 100.0])
    telemetry.poll()
    registry = build_registry(telemetry)
    assert sample(registry, "infergy_power_watts", source="gpu0", device="samples") is None
    assert sample(registry, "infergy_meter_up", source="gpu0", device="samples") == 0.0
    assert sample(
        registry, "infergy_energy_joules_total", source="gpu0", device="samples"
    ) == pytest.approx(4.0)
    # the 1-s analyzer source is fresh for 3 of its periods (3 s > stale_s)
    assert sample(registry, "infergy_meter_up", source="ac", device="mean") == 1.0


def test_session_counters_and_last_session_gauges() -> None:
    telemetry = LiveTelemetry([], clock=SessionClock())
    registry = build_registry(telemetry)
    assert sample(registry, "infergy_sessions_total", status="ok") == 0.0
    assert sample(registry, "infergy_queries_total", scenario="offline") == 0.0
    telemetry.session_started()
    assert sample(registry, "infergy_session_running") == 1.0
    telemetry.session_finished(RESULT)
    assert sample(registry, "infergy_session_running") == 0.0
    assert sample(registry, "infergy_sessions_total", status="ok") == 1.0
    assert sample(registry, "infergy_queries_total", scenario="offline") == 1.0
    key = {"scenario": "offline", "model": "resnet50", "backend": "onnxruntime"}
    assert sample(registry, "infergy_last_session_samples_per_second", **key) == 240.0
    assert sample(registry, "infergy_last_session_timestamp_seconds", **key) == 1_700_000_010.0
    assert sample(registry, "infergy_last_session_latency_seconds", **key, quantile="0.9") == 0.0055
    assert (
        sample(registry, "infergy_last_session_latency_seconds", **key, quantile="0.99") is None
    )  # null
    assert sample(registry, "infergy_last_session_average_watts", **key, source="ac") == 480.0
    assert (
        sample(registry, "infergy_last_session_samples_per_second_per_watt", **key, source="gpu0")
        == 0.8
    )
    assert sample(registry, "infergy_last_session_joules_per_query", **key, source="gpu0") == 1.25
    assert sample(registry, "infergy_last_session_joules_per_query", **key, source="ac") is None
    # an Offline session is one LoadGen query of every sample: both counted, J/sample beside
    assert sample(registry, "infergy_samples_total", scenario="offline") == 2400.0
    j_sample = sample(registry, "infergy_last_session_joules_per_sample", **key, source="gpu0")
    assert j_sample == pytest.approx(1.25 / 2400)
    assert sample(registry, "infergy_last_session_loadgen_valid", **key) == 1.0
    invalid = copy.deepcopy(RESULT) | {"status": "degraded", "loadgen": {"validity": "INVALID"}}
    telemetry.session_finished(invalid)
    assert sample(registry, "infergy_last_session_loadgen_valid", **key) == 0.0
    assert sample(registry, "infergy_sessions_total", status="degraded") == 1.0
    telemetry.restore_last_session(RESULT)  # the gauges back, nothing counted

    # a failed session is counted but keeps the last good figures; unknown model -> "unknown"
    failed = copy.deepcopy(RESULT) | {
        "status": "failed",
        "performance": {"samples_per_second": 1.0},
    }
    telemetry.session_started()
    telemetry.session_finished(failed)
    assert sample(registry, "infergy_sessions_total", status="failed") == 1.0
    assert sample(registry, "infergy_last_session_samples_per_second", **key) == 240.0
    telemetry.session_finished(copy.deepcopy(RESULT) | {"model": None, "status": "degraded"})
    assert sample(registry, "infergy_last_session_samples_per_second", scenario="offline", model="unknown",
                  backend="onnxruntime") == 240.0  # fmt: skip
    assert sample(registry, "infergy_session_running") == 0.0  # never negative
    # another schema is not trusted
    telemetry.session_finished({"schema_version": 2, "status": "ok"})
    assert sample(registry, "infergy_sessions_total", status="failed") == 2.0
    # restoring a stored result fills the gauges without counting
    telemetry.restore_last_session(copy.deepcopy(RESULT) | {"scenario": "server"})
    assert (
        sample(
            registry, "infergy_last_session_samples_per_second", **(key | {"scenario": "server"})
        )
        == 240.0
    )
    assert sample(registry, "infergy_sessions_total", status="ok") == 1.0


def test_a_generative_session_exports_its_energy_per_token_by_source() -> None:
    telemetry = LiveTelemetry([], clock=SessionClock())
    registry = build_registry(telemetry)
    gen = copy.deepcopy(RESULT) | {"model": "llama-8b-shape", "backend": "torch"}
    gen["generative"] = {"sources": {"gpu0": {
        "joules_per_output_token": 0.25, "joules_per_output_token_uncertainty": 0.01,
        "joules_per_prefill_token": 0.02, "joules_per_decode_token": 0.2,
        "tokens_per_second_per_watt": 4.0,
    }, "ac": {"joules_per_output_token": 0.4, "joules_per_prefill_token": None}}}  # fmt: skip
    telemetry.session_finished(gen)
    key = {"scenario": "offline", "model": "llama-8b-shape", "backend": "torch"}
    got = {
        f: sample(registry, f"infergy_last_session_{f}", **key, source="gpu0")
        for f in ("joules_per_output_token", "joules_per_output_token_uncertainty",
                  "joules_per_prefill_token", "joules_per_decode_token",
                  "tokens_per_second_per_watt")
    }  # fmt: skip
    assert got == {"joules_per_output_token": 0.25, "joules_per_output_token_uncertainty": 0.01,
                   "joules_per_prefill_token": 0.02, "joules_per_decode_token": 0.2,
                   "tokens_per_second_per_watt": 4.0}  # fmt: skip
    ac = {"source": "ac", **key}
    assert sample(registry, "infergy_last_session_joules_per_output_token", **ac) == 0.4
    assert sample(registry, "infergy_last_session_joules_per_prefill_token", **ac) is None  # null
    vision = {"scenario": "offline", "model": "resnet50", "backend": "onnxruntime"}
    telemetry.session_finished(RESULT)  # a vision run has no token figures at all
    assert sample(registry, "infergy_last_session_joules_per_output_token", **vision,
                  source="gpu0") is None  # fmt: skip


def test_last_sessions_are_bounded() -> None:
    telemetry = LiveTelemetry([], clock=SessionClock(), max_last_sessions=3)
    for i in range(5):
        telemetry.session_finished(RESULT | {"model": f"m{i}"})
    models = {s.model for s in telemetry.telemetry().last_sessions}
    assert models == {"m2", "m3", "m4"}


def test_table_is_the_contract() -> None:
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names))
    assert {m.name: m.labels for m in METRICS} == CONTRACT
    for m in METRICS:
        assert m.name.startswith("infergy_")
        assert (m.type == "counter") == m.name.endswith("_total")
        assert (m.type == "info") == m.name.endswith("_info")
        assert not m.unit or m.name.removesuffix("_total").endswith("_" + m.unit)
        assert not {"run_id", "query", "query_id", "id"} & set(m.labels)


def exposition(registry: Any, accept: str = "") -> str:
    body, _content_type = render_metrics(registry, accept)
    return body.decode()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_exposition(
    scripted: tuple[ScriptedMeter, LiveTelemetry, SessionClock],
) -> None:
    _meter, telemetry, _clock = scripted
    telemetry.poll()
    telemetry.session_finished(RESULT)
    text = exposition(build_registry(telemetry))
    assert "infergy_last_session_latency_seconds{" in text and "infergy_power_watts{" in text
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # promtool does lint: a gauge with a quantile label (what latency was before it became a summary)
    bad = text.replace(
        "# TYPE infergy_last_session_latency_seconds summary",
        "# TYPE infergy_last_session_latency_seconds gauge",
    )
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=bad, capture_output=True, text=True, check=False
    )
    assert lint.returncode != 0 and "quantile" in lint.stdout + lint.stderr


def test_content_negotiation_and_openmetrics(
    scripted: tuple[ScriptedMeter, LiveTelemetry, SessionClock],
) -> None:
    _meter, telemetry, _clock = scripted
    telemetry.poll()
    telemetry.session_finished(RESULT)
    registry = build_registry(telemetry)
    _body, plain = render_metrics(registry)
    assert plain.startswith("text/plain; version=0.0.4")
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    body, om = render_metrics(registry, accept)
    assert om.startswith("application/openmetrics-text; version=1.0.0")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["infergy_energy_joules"].type == "counter"
    assert families["infergy_energy_joules"].unit == "joules"
    assert families["infergy_build"].type == "info"
    assert families["infergy_last_session_latency_seconds"].type == "summary"


class CountingSource:
    """A TelemetrySource that counts reads (one snapshot per scrape, not per metric)."""

    def __init__(self, inner: TelemetrySource) -> None:
        self.inner, self.reads = inner, 0

    def telemetry(self) -> Telemetry:
        self.reads += 1
        return self.inner.telemetry()


def test_one_snapshot_per_scrape_and_no_trace_work_in_it(
    scripted: tuple[ScriptedMeter, LiveTelemetry, SessionClock],
) -> None:
    meter, telemetry, _clock = scripted
    telemetry.poll()
    counting = CountingSource(telemetry)
    collector = TelemetryCollector(counting)
    before = meter.snapshots
    for _ in range(5):
        families = list(collector.collect())
    assert counting.reads == 5 and meter.snapshots == before
    assert [f.name for f in families] == [
        m.name.removesuffix("_total").removesuffix("_info") for m in METRICS
    ]


def test_polls_scrapes_and_sessions_from_many_threads(
    scripted: tuple[ScriptedMeter, LiveTelemetry, SessionClock],
) -> None:
    meter, telemetry, clock = scripted
    registry = build_registry(telemetry)
    errors: list[BaseException] = []
    stop = threading.Event()

    def loop(fn: Any) -> None:
        try:
            while not stop.is_set():
                fn()
        except BaseException as err:  # reported below
            errors.append(err)

    def append() -> None:
        now = clock.now_ns()
        meter.buffers["gpu0.samples"].append(now, 240.0)

    def session() -> None:
        telemetry.session_started()
        telemetry.session_finished(RESULT)

    threads = [threading.Thread(target=loop, args=(f,)) for f in
               (telemetry.poll, telemetry.poll, lambda: render_metrics(registry), append, session)]  # fmt: skip
    for t in threads:
        t.start()
    stop.wait(0.5)
    stop.set()
    for t in threads:
        t.join(5)
    assert not errors
    telemetry.poll()
    snap = telemetry.telemetry()
    assert snap.sessions_running == 0
    assert snap.sessions_by_status["ok"] == snap.queries_by_scenario["offline"] > 0
    assert sample(
        registry, "infergy_power_watts", source="gpu0", device="samples"
    ) == pytest.approx(240.0)


def run_meters(meters: list[Any], telemetry: LiveTelemetry, seconds: float) -> None:
    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(m.run(), name=f"meter{i}") for i, m in enumerate(meters)]
            tasks.append(tg.create_task(telemetry.run(0.2), name="telemetry"))
            await asyncio.sleep(seconds)
            for task in tasks:
                task.cancel()

    asyncio.run(main())


def test_real_meters_sim_and_nvml_over_fake_gpus(tmp_path: Path) -> None:
    clock = SessionClock()
    sims = [
        SimMeter(clock=clock, model=PowerModel(60.0, 300.0, period_s=0.02), source=f"gpu{i}")
        for i in (2, 3)
    ]
    sims[0].set_activity(0.5)
    analyzer = SimMeter(clock=clock, model=PowerModel(400.0, 900.0, period_s=0.1), source="ac")
    nvml = NvmlMeter([FakeGpu(index=0), FakeGpu(index=1)], clock=clock, config=FAST)
    try:
        telemetry = LiveTelemetry([*sims, analyzer, nvml], clock=clock)
        run_meters([*sims, analyzer, nvml], telemetry, 1.6)
    finally:
        nvml.close()
    registry = build_registry(telemetry)
    assert sample(registry, "infergy_power_watts", source="gpu2", device="mean") == pytest.approx(
        180.0, rel=0.02
    )
    assert sample(registry, "infergy_power_watts", source="gpu3", device="mean") == pytest.approx(
        60.0
    )
    assert sample(registry, "infergy_power_watts", source="ac", device="mean") == pytest.approx(
        400.0
    )
    assert sample(registry, "infergy_source_info", source="ac", device="mean", meter_source="ac", kind="sim",
                  semantics="interval_mean", simulated="true") == 1.0  # fmt: skip
    for device in ("counter", "samples"):  # the fake GPUs: 200 W +- 80 W sine
        power = sample(registry, "infergy_power_watts", source="gpu0", device=device)
        assert power is not None and 110.0 < power < 290.0
    assert sample(registry, "infergy_gpu_power_limit_watts", gpu="gpu1") == 700.0
    assert sample(registry, "infergy_gpu_clock_hertz", gpu="gpu0", domain="sm") == 1.98e9
    assert sample(registry, "infergy_gpu_temperature_celsius", gpu="gpu0") == 41.0
    assert (
        sample(registry, "infergy_gpu_clock_event_active", gpu="gpu0", reason="sw_power_cap") == 1.0
    )
    assert (
        sample(registry, "infergy_gpu_clock_event_active", gpu="gpu0", reason="hw_slowdown") == 0.0
    )
    (tmp_path / "exposition.json").write_text(json.dumps(exposition(registry)))


class TailMeter(ScriptedMeter):
    """A meter with the optional fast path: only samples after a time, never a whole trace."""

    def samples_after(self, source: str, after_ns: int) -> tuple[np.ndarray, np.ndarray]:
        t, v, _u = self.buffers[source].arrays()
        keep = t > after_ns
        return t[keep], v[keep]


def test_incremental_meters_are_polled_without_snapshots() -> None:
    clock = SessionClock()
    meter = TailMeter([info("gpu0", Semantics.COUNTER, 0.1)])
    telemetry = LiveTelemetry([meter], clock=clock)
    t0 = telemetry.started_ns
    meter.buffers["gpu0"].extend(t0 + np.arange(11) * 100_000_000, 100.0 + 30.0 * np.arange(11))
    telemetry.poll()
    meter.buffers["gpu0"].extend(
        t0 + np.arange(11, 21) * 100_000_000, 100.0 + 30.0 * np.arange(11, 21)
    )
    telemetry.poll()
    registry = build_registry(telemetry)
    assert meter.snapshots == 0
    assert sample(
        registry, "infergy_energy_joules_total", source="gpu0", device="counter"
    ) == pytest.approx(600.0)
    assert sample(
        registry, "infergy_power_watts", source="gpu0", device="counter"
    ) == pytest.approx(300.0)


SWEEP: dict[str, Any] = {  # the headline fields of a sweep record (docs/maxq.md)
    "schema_version": 1, "kind": "infergy-maxq-sweep", "sweep_id": "mq-1", "status": "ok",
    "simulated": True, "updated_unix_ns": 1_700_000_100_000_000_000,
    "objective": {"name": "samples-per-joule", "unit": "samples/J"},
    "search": {"measurements": 8, "grid_points": 21},
    "recommendation": {
        "point": {"power_limit_w": 350.0, "batch_size": 256, "precision": "fp16"},
        "value": 32.3, "baseline_value": 25.0,
        "gain": {"relative": 0.292, "low": 0.25, "high": 0.334, "significant": True},
    },
}  # fmt: skip


def test_last_sweep_gauges_say_the_gain_its_interval_and_simulated() -> None:
    telemetry = LiveTelemetry([], clock=SessionClock())
    registry = build_registry(telemetry)
    assert sample(registry, "infergy_maxq_sweeps_total", status="ok") == 0.0
    assert sample(registry, "infergy_maxq_last_sweep_gain_ratio") is None  # no sweep: absent
    telemetry.sweep_finished(SWEEP)
    key = {"objective": "samples-per-joule", "simulated": "true"}
    assert sample(registry, "infergy_maxq_sweeps_total", status="ok") == 1.0
    for bound, value in (("estimate", 0.292), ("low", 0.25), ("high", 0.334)):
        assert sample(registry, "infergy_maxq_last_sweep_gain_ratio", **key, bound=bound) == value
    assert sample(registry, "infergy_maxq_last_sweep_significant", **key) == 1.0
    assert sample(registry, "infergy_maxq_last_sweep_objective", **key, settings="default") == 25.0
    assert sample(registry, "infergy_maxq_last_sweep_recommended_power_limit_watts", **key) == 350.0
    assert sample(registry, "infergy_maxq_last_sweep_points", **key, kind="grid") == 21.0
    # a failed sweep without a recommendation: counted, and its gain is absent, never zero
    telemetry.sweep_finished({**SWEEP, "status": "failed", "recommendation": None})
    assert sample(registry, "infergy_maxq_sweeps_total", status="failed") == 1.0
    assert sample(registry, "infergy_maxq_last_sweep_gain_ratio", **key, bound="estimate") is None
    assert sample(registry, "infergy_maxq_last_sweep_significant", **key) is None
