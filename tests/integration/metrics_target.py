"""A small live ``/metrics`` server for tests: running meters, LiveTelemetry, aiohttp.

It is what ``infergy serve`` will be for the Prometheus side, minus the rest: an event loop on
a background thread runs the meters, the telemetry poller and an aiohttp app whose
``/metrics`` handler calls :func:`~infergy.exporters.prometheus.render_metrics`. The meters
are real infergy meters over simulated hardware: an ``NvmlMeter`` over fake GPUs
(``tests/fake_gpu.py``: counter, 20-ms samples, 1-s average and context) and ``SimMeter``
sources (labelled ``sim``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from aiohttp import web

from infergy.core.clock import SessionClock
from infergy.exporters.prometheus import build_registry, render_metrics
from infergy.exporters.telemetry import LiveTelemetry
from infergy.meters.base import Meter
from tests.integration.prom_server import free_port


class MetricsTarget:
    """Serve ``/metrics`` for ``meters`` on 127.0.0.1 from a background event loop.

    Args:
        meters: the meters to run (their ``run()`` tasks start with the server).
        clock: the clock they stamp with.
        poll_interval_s: the telemetry poller's period.
    """

    def __init__(
        self, meters: Sequence[Meter], *, clock: SessionClock, poll_interval_s: float = 0.5
    ) -> None:
        self.meters = list(meters)
        self.telemetry = LiveTelemetry(self.meters, clock=clock)
        self.registry = build_registry(self.telemetry)
        self.poll_interval_s = poll_interval_s
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="metrics-target", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as err:  # surfaced by start()/stop() in the test's thread
            self._error = err
            self._ready.set()

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = render_metrics(self.registry, request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(meter.run(), name=f"meter[{meter.name}#{i}]")
                    for i, meter in enumerate(self.meters)
                ]
                tasks.append(
                    tg.create_task(self.telemetry.run(self.poll_interval_s), name="telemetry")
                )
                self._ready.set()
                await self._stop.wait()
                for task in tasks:
                    task.cancel()
        finally:
            await runner.cleanup()

    def start(self) -> MetricsTarget:
        """Start the loop thread and the server; returns once it listens."""
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            msg = f"metrics target did not start: {self._error!r}"
            raise RuntimeError(msg)
        return self

    def stop(self) -> None:
        """Cancel the meters and the server, join the thread; re-raise what failed there."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        if self._error is not None:
            raise self._error

    def __enter__(self) -> MetricsTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
