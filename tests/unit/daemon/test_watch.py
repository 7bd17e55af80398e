"""``infergy watch``'s two readers agree: a snapshot read locally and through ``/metrics``."""

from __future__ import annotations

from infergy.daemon.watch import parse_metrics, rows_of, with_gpu_sum
from infergy.exporters.prometheus import build_registry, render_metrics
from infergy.exporters.telemetry import GpuTelemetry, SourceTelemetry, Telemetry


def _source(name: str, device: str, kind: str, w: float | None, j: float | None, sim: bool):
    meter = name if device in ("counter", "mean", "instant") else f"{name}.{device}"
    semantics = {"counter": "counter", "mean": "interval_mean"}.get(device, "instant")
    return SourceTelemetry(name, device, meter, kind, semantics, sim, True, w, j)


SNAPSHOT = Telemetry(
    version="0", python_version="3.11",
    sources=(
        _source("gpu0", "counter", "nvml", 301.5, 1200.0, False),
        _source("gpu0", "samples", "nvml", 299.0, 1190.0, False),
        _source("gpu1", "counter", "nvml", 95.25, 400.5, False),
        _source("ac", "mean", "analyzer", 520.0, 2500.0, True),
        _source("cpu", "counter", "rapl", None, None, False),
    ),
    gpus=(
        GpuTelemetry("gpu0", 350.0, 1.98e9, 2.619e9, 60.0,
                     {"sw_power_cap": True, "gpu_idle": False, "hw_slowdown": False}),
        GpuTelemetry("gpu1", 350.0, 0.345e9, 2.619e9, 40.0, {"gpu_idle": True}),
    ),
)  # fmt: skip


class _Fixed:
    def telemetry(self) -> Telemetry:
        return SNAPSHOT


def test_local_rows_have_primary_signals_the_gpu_sum_clocks_and_reasons():
    rows = {r.source: r for r in rows_of(SNAPSHOT)}
    assert list(rows) == ["gpu0", "gpu1", "gpus", "ac", "cpu"]
    assert rows["gpus"].power_w == 301.5 + 95.25 and rows["gpus"].energy_j == 1200.0 + 400.5
    assert rows["gpu0"].sm_clock_mhz == 1980 and rows["gpu0"].clock_events == ("sw_power_cap",)
    assert rows["gpu1"].clock_events == ("gpu_idle",)
    assert rows["ac"].simulated and rows["ac"].clock_events is None
    assert rows["cpu"].power_w is None  # absent, never 0
    every = [r.source for r in rows_of(SNAPSHOT, all_signals=True)]
    assert "gpu0.samples" in every


def test_the_metrics_endpoint_gives_the_same_rows_as_the_snapshot():
    text = render_metrics(build_registry(_Fixed()))[0].decode()
    remote = parse_metrics(text)
    assert remote is not None
    local = rows_of(SNAPSHOT)
    assert [r.source for r in remote] == [r.source for r in local]
    for a, b in zip(remote, local, strict=True):
        assert (a.power_w, a.energy_j, a.simulated, a.kind) == (
            b.power_w,
            b.energy_j,
            b.simulated,
            b.kind,
        ), a.source
        assert (a.sm_clock_mhz, a.memory_clock_mhz, a.clock_events) == (
            b.sm_clock_mhz, b.memory_clock_mhz, b.clock_events,
        ), a.source  # fmt: skip


def test_metrics_without_infergy_power_are_refused_and_one_gpu_has_no_sum():
    assert parse_metrics("# HELP x y\n# TYPE x gauge\nx 1\n") is None
    single = [r for r in rows_of(SNAPSHOT) if r.source != "gpu1"]
    assert [r.source for r in with_gpu_sum([r for r in single if r.source != "gpus"])] == [
        "gpu0", "ac", "cpu",
    ]  # fmt: skip
