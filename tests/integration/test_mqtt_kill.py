"""A publisher process SIGKILLed mid-drain: the last will says offline, and no result is lost."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from infergy.store.db import Store
from tests.integration.mosquitto import running_broker
from tests.integration.mqtt_support import Collector, background, make_publisher, until

pytestmark = pytest.mark.integration
CHILD = Path(__file__).with_name("mqtt_child.py")


def test_sigkill_sends_the_last_will_and_a_restart_delivers_every_result(tmp_path: Path) -> None:
    n = 1500

    async def scenario() -> tuple[list[str], int]:
        conf = "max_queued_messages 1000000"
        with running_broker(tmp_path / "b", persistent=True, extra_conf=conf) as broker:
            sub = Collector(broker.port, persistent=True)
            async with background(sub.run()):
                await asyncio.wait_for(sub.connected.wait(), 5)
                db = tmp_path / "infergy.db"
                child = subprocess.Popen(
                    [sys.executable, str(CHILD), str(broker.port), str(db), str(n)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                try:
                    assert child.stdout is not None
                    for expected in ("queued", "connected"):
                        line = await asyncio.to_thread(child.stdout.readline)
                        assert line.strip() == expected
                    await until(lambda: len(sub.run_ids()) >= 50, 20, "the child to publish")
                    child.send_signal(signal.SIGKILL)
                    child.wait(5)
                finally:
                    child.kill()
                    child.wait(5)
                    if child.stdout is not None:
                        child.stdout.close()
                # The broker publishes the will on the abrupt end (retained, so late
                # subscribers see offline too).
                await until(lambda: sub.states()[-1:] == ["offline"], 5, "the last will")
                will = json.loads(sub.on("status")[-1])
                assert will["reason"] == "connection lost" and "t_unix_s" not in will, will
                with Store.open(db) as store:
                    left = store.outbox_count()
                assert left > 0, "the kill came after the drain ended"
                # a new publisher (a restarted service) on the same store sends the rest
                pub, outbox, store = make_publisher(tmp_path, broker.port, Store.open(db))
                async with background(pub.run()):
                    await until(lambda: sub.states()[-1:] == ["online"], 5, "online")
                    await until(lambda: outbox.pending() == 0, 20, "the outbox to drain")
                store.close()
                await until(lambda: len(set(sub.run_ids())) >= n, 10, "every result")
                return sub.run_ids(), left

    received, left = asyncio.run(scenario())
    first_seen = list(dict.fromkeys(received))
    assert first_seen == [f"r{i:05d}" for i in range(n)]  # no loss, in order
    print(f"killed with {left} entries left; {len(received) - len(first_seen)} duplicates")
