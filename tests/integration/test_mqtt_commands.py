"""Job requests over a real mosquitto: cmd/run and cmd/cancel, replies, bad payloads."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from infergy.daemon.jobs import JobSpec
from tests.integration.mosquitto import running_broker
from tests.integration.mqtt_support import BASE, background, make_publisher, until

pytestmark = pytest.mark.integration


def test_requests_are_validated_executed_and_answered(tmp_path: Path) -> None:
    submitted: list[JobSpec] = []
    cancelled: list[str] = []

    async def submit(spec: JobSpec) -> str:
        submitted.append(spec)
        return f"run-{len(submitted)}"

    async def cancel(run_id: str) -> bool:
        cancelled.append(run_id)
        return run_id == "run-1"

    async def scenario() -> dict[str, Any]:
        with running_broker(tmp_path / "b") as broker:
            pub, _, store = make_publisher(tmp_path, broker.port, submit=submit, cancel=cancel)
            async with background(pub.run()), aiomqtt.Client("127.0.0.1", broker.port) as c:
                await c.subscribe(f"{BASE}/reply/#", qos=1)
                await until(lambda: pub.connected)
                replies: dict[str, Any] = {}

                async def ask(verb: str, payload: bytes | dict[str, Any]) -> None:
                    raw = payload if isinstance(payload, bytes) else json.dumps(payload)
                    await c.publish(f"{BASE}/cmd/{verb}", raw, qos=1)

                await ask("run", {"request_id": "ok1", "backend": "onnxruntime", "duration": 5})
                await ask("run", {"request_id": "bad1", "duration": -5, "backend": "tpu"})
                await ask("run", b"\x00garbage without an id")  # dropped, logged
                await ask("run", b'{"request_id": "bad2", "duration": ')  # truncated JSON
                await ask("cancel", {"request_id": "c1", "run_id": "run-1"})
                await ask("cancel", {"request_id": "c2", "run_id": "run-7"})
                await ask("reboot", {"request_id": "v1"})
                await ask("run", {"request_id": "ok2", "scenario": "single-stream"})
                async with asyncio.timeout(5):
                    async for m in c.messages:
                        assert not m.retain
                        assert isinstance(m.payload, bytes)
                        replies[m.topic.value.rsplit("/", 1)[1]] = json.loads(m.payload)
                        if len(replies) == 7:
                            break
                assert pub.health().commands_total == 8
                assert pub.health().command_errors_total == 5
            store.close()
            return replies

    replies = asyncio.run(scenario())
    assert replies["ok1"] == {"ok": True, "request_id": "ok1", "run_id": "run-1"}
    assert replies["ok2"] == {"ok": True, "request_id": "ok2", "run_id": "run-2"}
    assert submitted == [
        JobSpec(backend="onnxruntime", duration=5.0),
        JobSpec(scenario="single-stream"),
    ]
    assert replies["bad1"]["ok"] is False
    assert {tuple(e["loc"]) for e in replies["bad1"]["errors"]} == {("duration",), ("backend",)}
    assert "not JSON" in replies["bad2"]["errors"][0]["msg"]
    assert replies["c1"] == {"ok": True, "request_id": "c1", "run_id": "run-1"}
    assert replies["c2"]["ok"] is False and replies["c2"]["errors"][0]["loc"] == ["run_id"]
    assert "not accepted" in replies["v1"]["errors"][0]["msg"]
    assert cancelled == ["run-1", "run-7"]
