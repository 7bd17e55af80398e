"""Light stand-ins for ``infergy serve`` nodes that speak the node protocol over a real broker.

For tests of the controller's edge cases (a node that never answers, never delivers, delivers
twice, dies) and for ``bench/fleet_dispatch.py`` (50 nodes in one process). Each is one MQTT
connection doing what a node does on the wire (:mod:`infergy.exporters.mqtt`): a retained
JSON ``status`` with a last will ``offline``, ``cmd/run`` and ``cmd/cancel`` validated by the
real :class:`~infergy.daemon.jobs.JobSpec` and answered on ``reply/<id>``, the job listed in
its status (queued, running, ok), and after ``job_s`` the result on ``runs`` (QoS 1) and
``runs/latest`` (retained). The result is a real ``infergy serve`` result with simulated
power (tests/fixtures/fleet/README.md) under the stand-in's run id. It runs no measurement:
only the controller is under test.

    node = StandIn(port, "s01", job_s=0.5, behaviour="ok")
    task = asyncio.create_task(node.run())
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiomqtt
from pydantic import ValidationError

from infergy import __version__
from infergy.daemon.jobs import JobSpec

RESULT = json.loads(
    (
        Path(__file__).resolve().parents[1] / "fixtures" / "fleet" / "result_serve_simulated.json"
    ).read_text(encoding="utf-8")
)
Behaviour = Literal["ok", "reject", "silent", "no_result", "twice", "fail"]


@dataclass
class StandIn:
    """One stand-in node.

    Args:
        port: the broker's port on 127.0.0.1.
        node: its name.
        job_s: how long a job "runs" before its result is published.
        behaviour: ``ok``; ``reject`` every job; ``silent`` (never replies); ``no_result``
            (accepts, runs, never publishes a result); ``twice`` (publishes its result twice);
            ``fail`` (its status says the job failed; no result).
    """

    port: int
    node: str
    job_s: float = 0.5
    behaviour: Behaviour = "ok"
    root: str = "infergy"
    digest: str = "sha256:0123456789abcdef"
    jobs: list[dict[str, Any]] = field(default_factory=list)
    received: int = 0
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    _client: aiomqtt.Client | None = None

    @property
    def base(self) -> str:
        return f"{self.root}/{self.node}"

    def _status(self, state: str = "online") -> bytes:
        body = {
            "state": state, "schema": "infergy-node-status/1", "node": self.node,
            "version": __version__, "config_digest": self.digest, "status_interval_s": 30.0,
            "gpus": [{"index": 0, "source": "gpu0", "name": "Stand-in GPU (SIMULATED)",
                      "uuid": f"GPU-standin-{self.node}", "power_limit_w": 700.0,
                      "simulated": True}],
            "simulated": True, "jobs": self.jobs[::-1][:8], "t_unix_s": round(time.time(), 3),
        }  # fmt: skip
        if state == "offline":
            body["reason"] = "connection lost"
        return json.dumps(body).encode()

    async def run(self) -> None:
        """Connect and serve until cancelled (a cancellation is a clean stop, as a node's)."""
        will = aiomqtt.Will(f"{self.base}/status", self._status("offline"), qos=1, retain=True)
        async with aiomqtt.Client("127.0.0.1", self.port, identifier=f"standin-{self.node}",
                                  will=will, clean_session=True) as client:  # fmt: skip
            self._client = client
            await client.subscribe(f"{self.base}/cmd/+", qos=1)
            await self._publish_status()
            self.connected.set()
            async with asyncio.TaskGroup() as tg:
                async for message in client.messages:
                    self.received += 1
                    payload = message.payload if isinstance(message.payload, bytes) else b""
                    verb = message.topic.value.rsplit("/", 1)[1]
                    tg.create_task(self._handle(verb, payload))

    async def die(self) -> None:
        """Drop the connection without a DISCONNECT (the broker sends the last will)."""
        if self._client is not None:
            sock = self._client._client.socket()  # the abrupt end is the point
            if sock is not None:
                sock.close()

    async def _publish_status(self) -> None:
        assert self._client is not None
        await self._client.publish(f"{self.base}/status", self._status(), qos=1, retain=True)

    async def _handle(self, verb: str, payload: bytes) -> None:
        assert self._client is not None
        body = json.loads(payload)
        rid = body.pop("request_id")
        if self.behaviour == "silent":
            return
        if verb == "cancel":
            reply: dict[str, Any] = {"ok": True, "request_id": rid, "run_id": body["run_id"]}
            for job in self.jobs:
                if job["run_id"] == body["run_id"]:
                    job["state"] = "aborted"
            await self._reply(rid, reply)
            return
        try:
            JobSpec.model_validate(body)
        except ValidationError as err:
            errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in err.errors()]
            await self._reply(rid, {"ok": False, "request_id": rid, "errors": errors})
            return
        if self.behaviour == "reject":
            error = {"loc": [], "msg": "this service does not sample nvml (it samples: sim)"}
            await self._reply(rid, {"ok": False, "request_id": rid, "errors": [error]})
            return
        run_id = f"standin-{self.node}-{secrets.token_hex(3)}"
        job = {"run_id": run_id, "kind": "run", "state": "running", "error": None}
        self.jobs.append(job)
        await self._reply(rid, {"ok": True, "request_id": rid, "run_id": run_id})
        await self._publish_status()
        await asyncio.sleep(self.job_s)
        if job["state"] == "aborted":
            return
        job["state"] = "failed" if self.behaviour == "fail" else "ok"
        if self.behaviour == "fail":
            job["error"] = "the workload process died"
        await self._publish_status()
        if self.behaviour in ("no_result", "fail"):
            return
        result = copy.deepcopy(RESULT) | {"run_id": run_id}
        for _ in range(2 if self.behaviour == "twice" else 1):
            data = json.dumps(result).encode()
            await self._client.publish(f"{self.base}/runs", data, qos=1)
        await self._client.publish(f"{self.base}/runs/latest", data, qos=1, retain=True)

    async def _reply(self, rid: str, body: dict[str, Any]) -> None:
        assert self._client is not None
        await self._client.publish(f"{self.base}/reply/{rid}", json.dumps(body), qos=1)


@contextlib.asynccontextmanager
async def standins(nodes: list[StandIn]) -> Any:
    """Run stand-ins (connected when entered); cancelled at the end."""
    tasks = [asyncio.create_task(n.run(), name=f"standin-{n.node}") for n in nodes]
    try:
        async with asyncio.timeout(30):
            for n, t in zip(nodes, tasks, strict=True):
                while not n.connected.is_set():
                    if t.done():
                        t.result()  # its error
                    await asyncio.sleep(0.01)
        yield nodes
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await t
