"""A campaign across 50 light simulated nodes through one real mosquitto: controller overhead.

    .venv/bin/python bench/fleet_dispatch.py                       # 50 nodes, 5 campaigns
    .venv/bin/python bench/fleet_dispatch.py --nodes 200 --runs 3 --out bench/results/fleet.json

Set-up: mosquitto from the Debian package on a free loopback port (``sys_interval 1`` for its
message counters); ``--nodes`` stand-in nodes (tests/integration/fleet_standin.py: one MQTT
connection each, the node protocol on the wire, a real ``infergy serve`` result of 16 kB
published ``--job-s`` after accepting; no measurement runs) and the real controller
(:class:`infergy.daemon.fleet.controller.Controller`, as ``infergy fleet run`` drives it) in
this one process. Each campaign sends one job to every node and ends when every result is in.

Figures, median over ``--runs`` campaigns: wall time from the controller's start to the last
result, its overhead over the job's own ``--job-s`` (connect, retained-status barrier,
dispatch, replies, status updates, 50 results), the time to dispatch, and the broker's
message rate over the campaign (``$SYS/broker/messages/received`` + ``sent``: every publish
in, every delivery out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infergy.config.settings import MqttSettings  # noqa: E402
from infergy.daemon.fleet.campaign import Campaign, new_campaign_id  # noqa: E402
from infergy.daemon.fleet.controller import Controller  # noqa: E402
from tests.integration.fleet_standin import StandIn, standins  # noqa: E402
from tests.integration.mosquitto import Mosquitto  # noqa: E402

JOB = {"backend": "onnxruntime", "scenario": "single-stream", "duration": 2, "meter": ["sim"]}


async def _counters(port: int) -> dict[str, int]:
    """The broker's message counters now (its ``$SYS`` values, settled for a second)."""
    await asyncio.sleep(1.5)
    out: dict[str, int] = {}
    async with aiomqtt.Client("127.0.0.1", port, timeout=5) as probe:
        await probe.subscribe("$SYS/broker/messages/+")
        async with asyncio.timeout(5):
            async for m in probe.messages:
                out[m.topic.value.rsplit("/", 1)[1]] = int(m.payload)  # type: ignore[arg-type]
                if {"received", "sent"} <= set(out):
                    return out
    return out


async def campaign(port: int, nodes: list[StandIn], job_s: float, folder: Path) -> dict[str, Any]:
    """One campaign to every node; its figures."""
    cid = new_campaign_id()
    c = Campaign(
        campaign_id=cid, kind="run", spec=JOB, patterns=["bench-*"],
        broker=f"127.0.0.1:{port}", topic_root="infergy", client_id=f"infergy-fleet-{cid}",
        created_unix_s=time.time(), deadline_s=120.0, accept_timeout_s=30.0,
        offline_grace_s=10.0,
    )  # fmt: skip
    settings = MqttSettings(host="127.0.0.1", port=port, timeout_s=10.0)
    before = await _counters(port)
    controller = Controller(c, settings, folder=folder / cid)
    t0 = time.perf_counter()
    done = await controller.run()
    wall_s = time.perf_counter() - t0
    after = await _counters(port)
    phases = {n.phase for n in done.nodes.values()}
    assert done.outcome == "complete" and phases == {"done"}, (done.outcome, phases)
    sent = [n.sent_unix_s for n in done.nodes.values() if n.sent_unix_s]
    accepted = [n.accepted_unix_s for n in done.nodes.values() if n.accepted_unix_s]
    messages = (after["received"] - before["received"]) + (after["sent"] - before["sent"])
    return {
        "wall_s": wall_s,
        "overhead_s": wall_s - job_s,
        "dispatch_to_all_accepted_s": max(accepted) - min(sent),
        "broker_messages": messages,
        "broker_messages_per_s": messages / wall_s,
        "duplicates": sum(n.duplicates for n in done.nodes.values()),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Start the broker and the nodes; run the campaigns."""
    with tempfile.TemporaryDirectory(prefix="infergy-fleet-bench-") as tmp:
        broker = Mosquitto.start(Path(tmp) / "broker", extra_conf="sys_interval 1\n"
                                 "max_queued_messages 100000")  # fmt: skip
        try:
            nodes = [StandIn(broker.port, f"bench-{i:03d}", job_s=args.job_s)
                     for i in range(args.nodes)]  # fmt: skip
            runs = []
            async with standins(nodes):
                for i in range(args.runs):
                    runs.append(await campaign(broker.port, nodes, args.job_s, Path(tmp)))
                    print(f"campaign {i + 1}: {json.dumps(runs[-1])}", file=sys.stderr)
        finally:
            broker.kill()
    keys = [k for k in runs[0] if k != "duplicates"]
    return {
        "command": " ".join(["bench/fleet_dispatch.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, shared",
        "date": time.strftime("%Y-%m-%d"),
        "nodes": args.nodes, "job_s": args.job_s, "runs": runs,
        "median": {k: statistics.median(r[k] for r in runs) for k in keys},
    }  # fmt: skip


def main() -> int:
    """The command line (the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--job-s", type=float, default=1.0, help="a stand-in job's length")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt's "pending publish calls"
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
