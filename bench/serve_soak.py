"""Soak benchmark of ``infergy serve`` (issue 7): 8 simulated GPUs + the emulated analyzer.

Starts a real mosquitto and ``infergy serve`` (``[meters] simulated_gpus = 8``, the emulated
WT310 at 10 Hz, MQTT on), then for ``--duration`` seconds: scrapes ``/metrics`` every second
(latency of each), counts the live ``power`` messages on MQTT per second, and samples the
daemon's CPU time and RSS from /proc every 10 s. Reports CPU % and RSS over time (flat after
warm-up?), scrape p50/p99, and the MQTT power rate. Everything simulated is labelled so by the
daemon; these figures are about the daemon's own costs.

Usage: python bench/serve_soak.py [--duration 600] [--out soak.json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_stat(pid: int) -> tuple[float, float]:
    """(cpu seconds, rss MiB) of ``pid`` and its children that are alive."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    rss = int(fields[21]) * PAGE / 2**20
    return cpu, rss


async def soak(duration_s: float, workdir: Path) -> dict[str, Any]:
    mqtt_port, http_port = free_port(), free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\nuser root\nset_tcp_nodelay true\n"
    )
    broker = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = workdir / "infergy.toml"
    config.write_text(
        f'node_name = "soak"\n[store]\npath = "{workdir / "store.db"}"\n[output]\ndir = "{workdir / "out"}"\n'
        f"[meters]\nrapl = false\nsimulated_gpus = 8\n"
        f'[serve]\nlisten = "127.0.0.1:{http_port}"\n'
        f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {mqtt_port}\npower_interval_s = 1.0\n'
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    log = (workdir / "serve.log").open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "infergy", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    scrapes_ms: list[float] = []
    power_msgs: list[float] = []
    usage: list[dict[str, float]] = []
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{http_port}/healthz") as r:
                        if r.status in (200, 503):
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.2)
            await asyncio.sleep(5)  # warm-up: meters settle

            async def scraper() -> None:
                while True:
                    t0 = time.perf_counter()
                    async with http.get(f"http://127.0.0.1:{http_port}/metrics") as r:
                        await r.read()
                    scrapes_ms.append((time.perf_counter() - t0) * 1e3)
                    await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - t0)))

            async def listener() -> None:
                async with aiomqtt.Client("127.0.0.1", mqtt_port) as c:
                    await c.subscribe("infergy/soak/power")
                    async for _msg in c.messages:
                        power_msgs.append(time.monotonic())

            async def sampler() -> None:
                t0 = time.monotonic()
                while True:
                    cpu, rss = proc_stat(daemon.pid)
                    usage.append({"t_s": time.monotonic() - t0, "cpu_s": cpu, "rss_mib": rss})
                    await asyncio.sleep(10)

            tasks = [asyncio.create_task(c()) for c in (scraper, listener, sampler)]
            await asyncio.sleep(duration_s)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        daemon.terminate()
        rc = daemon.wait(60)
        log.close()
        broker.kill()
        broker.wait()
    cpu_pct = [
        100 * (b["cpu_s"] - a["cpu_s"]) / (b["t_s"] - a["t_s"])
        for a, b in itertools.pairwise(usage)
    ]
    q = statistics.quantiles(scrapes_ms, n=100, method="inclusive")
    span = (power_msgs[-1] - power_msgs[0]) if len(power_msgs) > 1 else 0.0
    half = len(cpu_pct) // 2
    return {
        "duration_s": duration_s,
        "daemon_exit_code": rc,
        "scrapes": len(scrapes_ms),
        "scrape_ms": {"p50": q[49], "p99": q[98], "max": max(scrapes_ms)},
        "mqtt_power_msgs_per_s": (len(power_msgs) - 1) / span if span else None,
        "mqtt_power_interval_s_configured": 1.0,
        "cpu_pct_of_one_core": {
            "first_half_mean": statistics.fmean(cpu_pct[:half]) if half else None,
            "second_half_mean": statistics.fmean(cpu_pct[half:]) if cpu_pct else None,
        },
        "rss_mib": {
            "first": usage[0]["rss_mib"],
            "at_half": usage[len(usage) // 2]["rss_mib"],
            "last": usage[-1]["rss_mib"],
        },
        "usage": usage,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--out", type=Path, default=Path("serve_soak.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="infergy-soak-") as tmp:
        result = asyncio.run(soak(args.duration, Path(tmp)))
    args.out.write_text(json.dumps(result, indent=2))
    s = {k: v for k, v in result.items() if k != "usage"}
    print(json.dumps(s, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
