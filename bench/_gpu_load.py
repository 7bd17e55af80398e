"""GPU loads for the NVML benchmarks: torchvision ResNet-50 (random weights, fp16, channels_last)
in an offline (batch 256) or single-stream (batch 1) loop, or a documented matmul fallback
when torchvision is missing. Also a helper that runs a meter's event loop in a thread while
the main thread drives the load.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadResult:
    """One timed run of a load: its window on the session clock and what it did."""

    scenario: str
    start_ns: int
    end_ns: int
    queries: int
    samples: int
    latencies_s: list[float] = field(default_factory=list)
    issue_ns: list[int] = field(default_factory=list)
    """Each query's (batch's) issue on the session clock (per-query energy)."""
    complete_ns: list[int] = field(default_factory=list)
    batch: int = 1

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.duration_s


class Workload:
    """ResNet-50 (or matmul) inference on one CUDA device, offline or single-stream."""

    def __init__(self, torch: Any, device: int, *, offline_batch: int = 256) -> None:
        self.torch = torch
        self.device = torch.device("cuda", device)
        self.offline_batch = offline_batch
        torch.backends.cudnn.benchmark = True
        try:
            import torchvision

            model = torchvision.models.resnet50(weights=None)
            self.kind = f"torchvision {torchvision.__version__} resnet50 (random weights), fp16, channels_last"
            self._make_input = lambda n: (
                torch.randn(n, 3, 224, 224, device=self.device)
                .half()
                .to(memory_format=torch.channels_last)
            )
            self.model = model.to(self.device).half().to(memory_format=torch.channels_last).eval()
        except ImportError:
            self.kind = (
                "FALLBACK (torchvision missing): fp16 matmul, offline = 8192x8192 @ 8192x8192 per "
                "'batch', single-stream = 1024x1024 @ 1024x1024 per query"
            )
            w_big = torch.randn(8192, 8192, device=self.device, dtype=torch.float16)
            w_small = torch.randn(1024, 1024, device=self.device, dtype=torch.float16)
            self._make_input = lambda n: torch.randn(
                8192 if n > 1 else 1024,
                8192 if n > 1 else 1024,
                device=self.device,
                dtype=torch.float16,
            )
            self.model = lambda x: x @ (w_big if x.shape[0] == 8192 else w_small)
        self.inputs = {1: self._make_input(1), offline_batch: self._make_input(offline_batch)}

    def run(self, scenario: str, seconds: float, clock: Any) -> LoadResult:
        """Run ``offline`` (batch 256) or ``single-stream`` (batch 1, synchronous) for ``seconds``."""
        torch = self.torch
        batch = self.offline_batch if scenario == "offline" else 1
        x = self.inputs[batch]
        latencies: list[float] = []
        issue: list[int] = []
        complete: list[int] = []
        model = self.model
        if scenario == "single-stream-graph":  # batch 1 replayed as a CUDA graph: less CPU noise
            model = self._graph(x)
        with torch.inference_mode():
            torch.cuda.synchronize(self.device)
            start_ns = clock.now_ns()
            deadline = time.perf_counter() + seconds
            queries = 0
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                issue.append(clock.now_ns())
                model(x)
                torch.cuda.synchronize(self.device)
                complete.append(clock.now_ns())
                latencies.append(time.perf_counter() - t0)
                queries += 1
            end_ns = clock.now_ns()
        return LoadResult(scenario, start_ns, end_ns, queries, queries * batch, latencies,
                          issue, complete, batch)  # fmt: skip

    def run_bursty(
        self, seconds: float, clock: Any, *, busy_s: float = 0.2, idle_s: float = 0.2,
        batch: int = 64,
    ) -> LoadResult:  # fmt: skip
        """Alternate ``busy_s`` of back-to-back batches of ``batch`` and ``idle_s`` of nothing.

        Batch 64 (not 256) so that a busy stretch ends within a batch (~10 ms on an H200) of
        ``busy_s``. The idle stretches are slept through: the GPU idles.
        """
        torch = self.torch
        if batch not in self.inputs:
            self.inputs[batch] = self._make_input(batch)
        x = self.inputs[batch]
        issue: list[int] = []
        complete: list[int] = []
        latencies: list[float] = []
        with torch.inference_mode():
            torch.cuda.synchronize(self.device)
            start_ns = clock.now_ns()
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                busy_until = time.perf_counter() + busy_s
                while time.perf_counter() < busy_until:
                    t0 = time.perf_counter()
                    issue.append(clock.now_ns())
                    self.model(x)
                    torch.cuda.synchronize(self.device)
                    complete.append(clock.now_ns())
                    latencies.append(time.perf_counter() - t0)
                if time.perf_counter() < deadline:
                    time.sleep(idle_s)
            end_ns = clock.now_ns()
        n = len(issue)
        return LoadResult("bursty", start_ns, end_ns, n, n * batch, latencies, issue, complete,
                          batch)  # fmt: skip

    def _graph(self, x: Any) -> Any:
        """The model on ``x`` captured once as a CUDA graph; calling it replays the graph."""
        if getattr(self, "_replay", None) is None:
            torch = self.torch
            with torch.inference_mode():
                stream = torch.cuda.Stream(self.device)
                stream.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(stream):
                    for _ in range(3):
                        self.model(x)
                torch.cuda.current_stream(self.device).wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    self.model(x)
            self._replay = lambda _x: graph.replay()
        return self._replay


class MeterThread:
    """A meter's ``run()`` in its own event loop on a background thread."""

    def __init__(self, meter: Any) -> None:
        self.meter = meter
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(self.meter.run(), name="meter")
            await self._stop.wait()
            task.cancel()

    def start(self) -> MeterThread:
        self._started.clear()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="meter-loop")
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)

    def __enter__(self) -> MeterThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PowerUsagePoller:
    """``nvmlDeviceGetPowerUsage`` polled at ``hz`` in a thread: the naive approach, for contrast."""

    def __init__(self, handle: Any, clock: Any, hz: float = 50.0) -> None:
        self.handle, self.clock, self.period_s = handle, clock, 1.0 / hz
        self.t_ns: list[int] = []
        self.mw: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="power-usage-poller", daemon=True)

    def _run(self) -> None:
        import pynvml

        next_t = time.perf_counter()
        while not self._stop.is_set():
            t0 = self.clock.now_ns()
            mw = pynvml.nvmlDeviceGetPowerUsage(self.handle)
            self.t_ns.append((t0 + self.clock.now_ns()) // 2)
            self.mw.append(int(mw))
            next_t += self.period_s
            time.sleep(max(0.0, next_t - time.perf_counter()))

    def __enter__(self) -> PowerUsagePoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
