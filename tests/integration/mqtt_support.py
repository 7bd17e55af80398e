"""Helpers of the MQTT integration tests: a collecting subscriber and a publisher under test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from infergy.config.settings import MqttSettings
from infergy.daemon.mqtt_commands import CommandHandler
from infergy.exporters.mqtt import MqttPublisher
from infergy.exporters.outbox import Outbox
from infergy.store.db import Store

NODE = "n1"
BASE = f"infergy/{NODE}"


def settings(port: int, **kw: Any) -> MqttSettings:
    """Fast settings for tests: short timeouts and backoff."""
    values: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": port,
        "timeout_s": 3.0,
        "keepalive_s": 5,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.3,
        "power_interval_s": 3600.0,
    }
    return MqttSettings(**(values | kw))


@dataclass
class Collector:
    """A subscriber that records every message and reconnects after broker restarts.

    ``persistent``: a fixed client id with clean_session=False, so a broker with persistence
    queues QoS 1 messages for it while it is away (including across a broker SIGKILL).
    """

    port: int
    topic: str = f"{BASE}/#"
    persistent: bool = False
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.port,
                    identifier="collector" if self.persistent else None,
                    clean_session=False if self.persistent else None,
                    timeout=3,
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.connected.set()
                    async for m in client.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else b""
                        self.messages.append((m.topic.value, payload, m.retain))
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.02)

    def on(self, suffix: str) -> list[bytes]:
        return [p for t, p, _ in self.messages if t == f"{BASE}/{suffix}"]

    def states(self) -> list[str]:
        """The ``state`` of every ``status`` message so far (``online``, ``offline``)."""
        return [json.loads(p)["state"] for p in self.on("status")]

    def run_ids(self) -> list[str]:
        return [json.loads(p)["run_id"] for p in self.on("runs")]


@contextlib.asynccontextmanager
async def background(*coros: Any) -> AsyncIterator[list[asyncio.Task[Any]]]:
    """Run coroutines as tasks; cancel and await them at the end."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield tasks
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` every 10 ms; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


def make_publisher(
    tmp_path: Path, port: int, store: Store | None = None, **kw: Any
) -> tuple[MqttPublisher, Outbox, Store]:
    store = store or Store.open(tmp_path / "infergy.db")
    outbox = Outbox(store, max_entries=kw.pop("max_entries", 100_000))
    extra = {k: kw.pop(k) for k in ("latest_power",) if k in kw}
    submit, cancel = kw.pop("submit", None), kw.pop("cancel", None)
    config = settings(port, **kw)
    if submit is not None or cancel is not None:
        extra["commands"] = CommandHandler(submit, cancel, timeout_s=config.timeout_s)
    pub = MqttPublisher(config, node=NODE, outbox=outbox, **extra)
    return pub, outbox, store


def result(i: int, pad: int = 0) -> Mapping[str, Any]:
    return {"run_id": f"r{i:05d}", "status": "ok", "pad": "x" * pad}
