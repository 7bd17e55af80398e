"""A publisher in its own process, for the SIGKILL tests: ``python mqtt_child.py PORT DB N``.

Queues ``N`` results in the store ``DB`` (durable), prints ``queued``, then starts an
``MqttPublisher`` that drains them and prints ``connected``. The test kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infergy.store.db import Store
from tests.integration.mqtt_support import make_publisher, result


async def main(port: int, db: Path, n: int) -> None:
    store = Store.open(db)
    pub, _, _ = make_publisher(db.parent, port, store)
    for i in range(n):
        pub.enqueue_result(result(i, pad=500))
    print("queued", flush=True)
    task = asyncio.create_task(pub.run())
    while not pub.connected:
        await asyncio.sleep(0.005)
    print("connected", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])))
