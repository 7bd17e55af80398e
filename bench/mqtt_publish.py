"""MQTT publisher against a real mosquitto: live power rate held, outbox drain after an outage.

    .venv/bin/python bench/mqtt_publish.py                          # 10 Hz for 30 s, 5000 results
    .venv/bin/python bench/mqtt_publish.py --power-s 600 --out bench/results/mqtt.json

Set-up: mosquitto from the Debian package on a free loopback port (``set_tcp_nodelay true``,
``max_queued_messages`` raised so the bench's subscriber is never the one dropping), the
publisher (``infergy.exporters.mqtt.MqttPublisher``) in this process with a real store, and
a subscriber (aiomqtt) in this process counting what arrives.

1. Live power: ``latest_power()`` returns 9 sources (8 GPUs + ``ac``); the publisher runs at
   ``--power-interval-s`` for ``--power-s`` seconds. Figures: messages received by the
   subscriber vs expected (duration / interval), the achieved rate, inter-arrival p50/p99/max,
   payload size, and this process's CPU over the span (publisher + subscriber + broker
   excluded: the broker is another process, its CPU is reported separately).
2. Outage and drain: the broker is stopped, ``--results`` results of ``--result-bytes`` each
   are queued (durable) while the publisher keeps retrying, the broker is started again on the
   same port. Figures: enqueue rate (durable commits/s), time from the broker's return to the
   publisher's reconnect, drain throughput (results acknowledged per second, reconnect to empty
   outbox), and what the subscriber received (all, in order, duplicates).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402

from infergy.config.settings import MqttSettings  # noqa: E402
from infergy.exporters.mqtt import MqttPublisher  # noqa: E402
from infergy.exporters.outbox import Outbox  # noqa: E402
from infergy.store.db import Store  # noqa: E402
from tests.integration.mosquitto import Mosquitto  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
NODE = "bench"
BASE = f"infergy/{NODE}"


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


class Subscriber:
    def __init__(self, port: int, topic: str) -> None:
        self.port, self.topic = port, topic
        self.got: list[tuple[float, str, bytes]] = []
        self.connected = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, timeout=5) as c:
                    await c.subscribe(self.topic, qos=1)
                    self.connected.set()
                    async for m in c.messages:
                        p = m.payload if isinstance(m.payload, bytes) else b""
                        self.got.append((time.monotonic(), m.topic.value, p))
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.005)


async def until(pred: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.002)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="infergy-mqtt-bench-"))
    broker = Mosquitto.start(work / "broker", extra_conf="max_queued_messages 10000000")
    store = Store.open(work / "infergy.db")
    outbox = Outbox(store, max_entries=10_000_000)
    sources = {f"gpu{i}": 300.0 + i for i in range(8)} | {"ac": 2900.0}
    settings = MqttSettings(
        enabled=True,
        host="127.0.0.1",
        port=broker.port,
        power_interval_s=args.power_interval_s,
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
        timeout_s=10.0,
    )
    pub = MqttPublisher(settings, node=NODE, outbox=outbox, latest_power=lambda: sources)
    out: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "mosquitto": broker.binary}

    power_sub = Subscriber(broker.port, f"{BASE}/power")
    tasks = [asyncio.create_task(power_sub.run())]
    await asyncio.wait_for(power_sub.connected.wait(), 5)
    tasks.append(asyncio.create_task(pub.run(), name="mqtt"))
    await until(lambda: pub.connected, 5)

    # 1. live power
    await asyncio.sleep(args.power_interval_s * 2)  # past the first tick
    n0, cpu0, bcpu0, t0 = len(power_sub.got), self_cpu_s(), cpu_s(broker.proc.pid), time.monotonic()  # type: ignore[union-attr]
    await asyncio.sleep(args.power_s)
    span = time.monotonic() - t0
    arrivals = [t for t, _, _ in power_sub.got[n0:]]
    gaps_ms = [(b - a) * 1e3 for a, b in itertools.pairwise(arrivals)]
    out["power"] = {
        "sources": len(sources),
        "interval_s": args.power_interval_s,
        "duration_s": round(span, 3),
        "received": len(arrivals),
        "expected": round(span / args.power_interval_s),
        "rate_hz": round(len(arrivals) / span, 3),
        "target_hz": round(1 / args.power_interval_s, 3),
        "interarrival_ms": {
            "p50": round(statistics.median(gaps_ms), 2),
            "p99": round(pct(gaps_ms, 0.99), 2),
            "max": round(max(gaps_ms), 2),
        },
        "payload_bytes": len(power_sub.got[-1][2]),
        "bench_process_cpu_pct": round(100 * (self_cpu_s() - cpu0) / span, 2),
        "broker_cpu_pct": round(100 * (cpu_s(broker.proc.pid) - bcpu0) / span, 2),  # type: ignore[union-attr]
    }

    # 2. outage, then drain
    runs_sub = Subscriber(broker.port, f"{BASE}/runs")
    tasks.append(asyncio.create_task(runs_sub.run()))
    await asyncio.wait_for(runs_sub.connected.wait(), 5)
    broker.kill()
    await until(lambda: not pub.connected, 5)
    pad = "x" * max(0, args.result_bytes - 60)
    t_enq = time.monotonic()
    for i in range(args.results):
        pub.enqueue_result({"run_id": f"r{i:07d}", "status": "ok", "pad": pad})
    enqueue_s = time.monotonic() - t_enq
    published0 = pub.health().published_total
    await asyncio.sleep(1.0)  # an outage; the publisher keeps retrying
    broker.restart()
    t_up = time.monotonic()
    await until(lambda: pub.connected, 10)
    t_conn = time.monotonic()
    await until(lambda: pub.health().published_total - published0 >= args.results, 600)
    t_acked = time.monotonic()
    with contextlib.suppress(TimeoutError):
        await until(lambda: len(runs_sub.got) >= args.results, 30)
    t_recv = time.monotonic()
    ids = [json.loads(p)["run_id"] for _, _, p in runs_sub.got]
    first = list(dict.fromkeys(ids))
    expected = [f"r{i:07d}" for i in range(args.results)]
    out["drain"] = {
        "results": args.results,
        "result_bytes": len(json.dumps({"run_id": "r0000000", "status": "ok", "pad": pad})),
        "enqueue_per_s": round(args.results / enqueue_s, 1),
        "reconnect_after_broker_up_s": round(t_conn - t_up, 3),
        "drain_s": round(t_acked - t_conn, 3),
        "drain_results_per_s": round(args.results / (t_acked - t_conn), 1),
        "subscriber_received": len(ids),
        "subscriber_all_in_order": first == expected,
        "subscriber_missing": len(set(expected) - set(ids)),
        "subscriber_duplicates": len(ids) - len(first),
        "subscriber_last_arrival_after_up_s": round(t_recv - t_up, 3),
    }
    out["health"] = pub.health().__dict__
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    broker.stop()
    store.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--power-interval-s", type=float, default=0.1)
    p.add_argument("--power-s", type=float, default=30.0)
    p.add_argument("--results", type=int, default=5000)
    p.add_argument("--result-bytes", type=int, default=2000)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    result = asyncio.run(bench(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
