"""Benchmark: `/metrics` scrape latency and collector CPU with 8 simulated GPUs and an analyzer.

The setup is the service's: one event loop runs 8 SimMeter GPUs (``gpu0``..``gpu7``, 50 Hz,
labelled sim), an analyzer-like SimMeter ``ac`` (10 Hz), the LiveTelemetry poller (every
``--poll-interval-s``, in a worker thread) and an aiohttp ``/metrics`` handler calling
``render_metrics``; last-session gauges hold 4 scenarios. A client thread scrapes N times over
one keep-alive connection with Prometheus' Accept header (OpenMetrics), as Prometheus does.

Reported (JSON): scrape wall latency at the client (p50/p90/p99/max), the handler's CPU per
scrape (collector + encoding, thread CPU time in the loop), the poller's CPU per poll, the
process CPU over the run (% of one core), series and bytes per scrape. ``--prefill-s`` puts
that much history into every ring buffer first, to show what ``Meter.snapshot`` costs the
poller once buffers hold hours (the scrape itself never reads a trace).

    .venv/bin/python bench/metrics_scrape.py --scrapes 2000 --out bench/results/metrics_scrape.json
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
from aiohttp import web

from infergy.core.clock import SessionClock
from infergy.core.trace import NS_PER_S
from infergy.exporters.prometheus import build_registry, render_metrics
from infergy.exporters.telemetry import LiveTelemetry
from infergy.meters.sim import PowerModel, SimMeter

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50": round(pct(ms, 50), 3),
        "p90": round(pct(ms, 90), 3),
        "p99": round(pct(ms, 99), 3),
        "max": round(max(ms), 3) if ms else float("nan"),
        "mean": round(statistics.fmean(ms), 3) if ms else float("nan"),
    }


def result_for(scenario: str) -> dict[str, object]:
    """A result object shaped like the contract's (figures invented for the bench)."""
    sources = ["gpu0", "gpu1", "gpus", "ac"]
    return {
        "schema_version": 1, "status": "ok", "scenario": scenario, "model": "resnet50",
        "backend": "tensorrt", "window": {"end_unix_ns": time.time_ns()},
        "performance": {"queries": 1000, "samples_per_second": 1000.0,
                        "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 3.0}},
        "power": {s: {"average_watts": 300.0} for s in sources},
        "efficiency": {s: {"samples_per_second_per_watt": 3.3, "joules_per_query": 0.3} for s in sources},
    }  # fmt: skip


def prefill(meters: list[SimMeter], clock: SessionClock, seconds: float) -> None:
    now = clock.now_ns()
    for m in meters:
        period_ns = round(m.model.period_s * NS_PER_S)
        n = int(seconds * NS_PER_S / period_ns)
        t = now - period_ns * np.arange(n, 0, -1, dtype=np.int64)
        m._buffer.extend(t, np.full(n, m.model.idle_w))  # bench-only: history without waiting


def scraper(port: int, n: int, interval_s: float, out: list[float], sizes: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", "/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
        response = conn.getresponse()
        body = response.read()
        out.append(time.perf_counter() - t0)
        sizes.append(len(body))
        assert response.status == 200, response.status
        time.sleep(interval_s)
    conn.close()


async def main(args: argparse.Namespace) -> dict[str, object]:
    clock = SessionClock()
    gpus = [
        SimMeter(clock=clock, model=PowerModel(60.0, 350.0, 0.02, 1 / args.gpu_hz), source=f"gpu{i}", seed=i)
        for i in range(args.gpus)
    ]  # fmt: skip
    for i, g in enumerate(gpus):
        g.set_activity(i / max(1, args.gpus - 1))
    analyzer = SimMeter(
        clock=clock, model=PowerModel(400.0, 3000.0, 0.01, 1 / args.analyzer_hz), source="ac"
    )
    meters = [*gpus, analyzer]
    if args.prefill_s:
        prefill(meters, clock, args.prefill_s)
    telemetry = LiveTelemetry(meters, clock=clock)
    for scenario in ("offline", "server", "single-stream", "multi-stream"):
        telemetry.session_started()
        telemetry.session_finished(result_for(scenario))
    registry = build_registry(telemetry)

    render_cpu_s: list[float] = []
    poll_cpu_s: list[float] = []
    poll_wall_s: list[float] = []
    poll = telemetry.poll

    def timed_poll() -> None:
        c0, w0 = time.thread_time(), time.perf_counter()
        poll()
        poll_cpu_s.append(time.thread_time() - c0)
        poll_wall_s.append(time.perf_counter() - w0)

    telemetry.poll = timed_poll  # type: ignore[method-assign]

    async def handler(request: web.Request) -> web.Response:
        c0 = time.thread_time()
        body, content_type = render_metrics(registry, request.headers.get("Accept", ""))
        render_cpu_s.append(time.thread_time() - c0)
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    latencies: list[float] = []
    sizes: list[int] = []
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(m.run(), name=f"meter[{m.source}]") for m in meters]
        tasks.append(tg.create_task(telemetry.run(args.poll_interval_s), name="telemetry"))
        await asyncio.sleep(args.warmup_s)
        ru0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        render_cpu_s.clear()
        poll_cpu_s.clear()
        poll_wall_s.clear()
        await asyncio.to_thread(scraper, port, args.scrapes, args.interval_s, latencies, sizes)
        ru1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - w0
        for t in tasks:
            t.cancel()
    await runner.cleanup()
    cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    snap = telemetry.telemetry()
    _body, _ct = render_metrics(registry)
    series = sum(1 for line in _body.decode().splitlines() if line and not line.startswith("#"))
    return {
        "bench": "metrics_scrape",
        "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": _cpus()},
        "setup": {
            "gpus": args.gpus, "gpu_hz": args.gpu_hz, "analyzer_hz": args.analyzer_hz,
            "poll_interval_s": args.poll_interval_s, "scrapes": args.scrapes,
            "scrape_interval_s": args.interval_s, "prefill_s": args.prefill_s,
            "sources": len(snap.sources), "series_per_scrape": series,
            "bytes_per_scrape_openmetrics": int(statistics.median(sizes)) if sizes else 0,
            "simulated": "all sources are SimMeter (kind sim)",
        },
        "scrape_latency_ms": summary_ms(latencies),
        "handler_cpu_ms": summary_ms(render_cpu_s),
        "poll_cpu_ms": summary_ms(poll_cpu_s),
        "poll_wall_ms": summary_ms(poll_wall_s),
        "process_cpu_percent_of_one_core": round(100 * cpu_s / wall, 2),
        "collector_cpu_percent_of_one_core": round(100 * sum(render_cpu_s) / wall, 3),
        "poller_cpu_percent_of_one_core": round(100 * sum(poll_cpu_s) / wall, 3),
        "wall_s": round(wall, 2),
    }  # fmt: skip


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--gpu-hz", type=float, default=50.0)
    p.add_argument("--analyzer-hz", type=float, default=10.0)
    p.add_argument("--scrapes", type=int, default=1000)
    p.add_argument("--interval-s", type=float, default=0.02, help="pause between scrapes")
    p.add_argument("--poll-interval-s", type=float, default=1.0)
    p.add_argument("--warmup-s", type=float, default=2.0)
    p.add_argument("--prefill-s", type=float, default=0.0, help="history per buffer before the run")
    p.add_argument("--out", type=Path)
    return p.parse_args()


if __name__ == "__main__":
    arguments = parse()
    report = asyncio.run(main(arguments))
    text = json.dumps(report, indent=2)
    print(text)
    if arguments.out:
        arguments.out.write_text(text + "\n")
