"""A running inference server as a :class:`~infergy.runners.backends.base.Backend`.

The warm-up and its calibration call :meth:`NetworkBackend.infer` from worker threads (one
request, or one per sample for OpenAI, waited for); the measured LoadGen run uses the
asynchronous :class:`~infergy.runners.network.sut.NetworkSut` over the same loop, session
and protocol (:mod:`.kserve`, :mod:`.openai`).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Callable
from typing import Any

from infergy.errors import ServerRequestError, WorkloadError, WorkloadFailedError
from infergy.runners.backends.base import Limits
from infergy.runners.lg_calls import LoadgenCalls
from infergy.runners.network.client import LoopThread
from infergy.runners.network.kserve import KServeModel
from infergy.runners.network.openai import Generation, OpenAIModel
from infergy.runners.network.sut import NetworkSut
from infergy.runners.recorder import QueryRecorder
from infergy.runners.types import WorkloadConfig

LOAD_TIMEOUT_S = 60.0


class NetworkBackend:
    """The ``kserve`` or ``openai`` backend: a model on a server, behind the Backend Protocol."""

    device = "server"

    def __init__(self, cfg: WorkloadConfig) -> None:
        if cfg.endpoint is None:
            msg = f"the {cfg.backend} backend needs --endpoint"
            raise WorkloadError(msg)
        self.cfg = cfg
        self.kserve: KServeModel | None = None
        self.openai: OpenAIModel | None = None
        if cfg.backend == "kserve":
            self.kserve = KServeModel.parse(cfg.endpoint)
            self.kserve.seed = cfg.seed
        else:
            self.openai = OpenAIModel.parse(
                cfg.endpoint, model=cfg.model, max_tokens=cfg.max_tokens
            )
        self._loop: LoopThread | None = None
        self.problems: list[str] = []

    @property
    def streams_tokens(self) -> bool:
        """Whether samples stream tokens (OpenAI): LoadGen's token latencies apply."""
        return self.openai is not None

    @property
    def loop_thread(self) -> LoopThread:
        """The loop the requests run on (after :meth:`load`)."""
        if self._loop is None:
            msg = "the network backend is not loaded"
            raise WorkloadFailedError(msg)
        return self._loop

    @property
    def concurrency(self) -> int:
        """Requests in flight at most (the connection pool's size)."""
        return self.cfg.concurrency

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the requests run on (after :meth:`load`)."""
        return self.loop_thread.loop

    @property
    def max_batch(self) -> int | None:
        """The most samples one request takes (None: any)."""
        if self.openai is not None:
            return 1
        return None if self.kserve is None else self.kserve.max_batch

    # -- the Backend Protocol -----------------------------------------------------------------

    def load(self) -> None:
        """Connect, read the metadata, check the model is ready (raises WorkloadError)."""
        cfg = self.cfg
        self._loop = LoopThread(
            f"infergy-net-{cfg.backend}", concurrency=cfg.concurrency,
            timeout_s=cfg.request_timeout_s,
        )  # fmt: skip
        session, timeout = self._loop.session, min(cfg.request_timeout_s, LOAD_TIMEOUT_S)
        budget = 4 * timeout + 5
        try:
            if self.kserve is not None:
                self._loop.run(self.kserve.load(session, timeout), budget)
                if not self.kserve.batched and cfg.batch_size > 1:
                    self.problems.append(
                        f"model {self.kserve.name} has no batch dimension: one sample per request"
                    )
            elif self.openai is not None:
                self._loop.run(self.openai.load(session, timeout, cfg.prompts, cfg.seed), budget)
        except WorkloadFailedError as err:  # the loop's own timeout
            self.close()
            msg = f"cannot use the server at {cfg.endpoint}: {err}"
            raise WorkloadError(msg, hint="is the server running?") from None
        except BaseException:
            self.close()
            raise

    def infer(self, n: int, worker: int = 0) -> None:
        """Run ``n`` samples and wait (warm-up): one request, or ``n`` for unbatched models."""
        del worker
        loop = self.loop_thread
        per = self.max_batch or n
        sizes = [min(per, n - lo) for lo in range(0, n, per)]

        async def batch() -> None:
            if self.openai is not None:
                await asyncio.gather(*(self.generate(i, None) for i in range(n)))
            else:
                await asyncio.gather(*(self.send(k) for k in sizes))

        loop.run(batch(), self.cfg.request_timeout_s + 5.0)

    def limits(self) -> Limits:
        """Batch limits; the sample shape is the model's (KServe) or () for text."""
        shape: tuple[int, ...] = ()
        if self.kserve is not None and self.kserve.inputs:
            spec = self.kserve.inputs[0]
            shape = spec.shape[1:] if self.kserve.batched else spec.shape
        return Limits(max_batch=self.max_batch or self.cfg.batch_size, sample_shape=shape)

    def describe(self) -> dict[str, Any]:
        """Provenance: the server and model as they describe themselves, client versions."""
        proto = self.kserve.describe() if self.kserve is not None else {}
        if self.openai is not None:
            proto = self.openai.describe()
        name = self.kserve.name if self.kserve is not None else None
        if self.openai is not None:
            name = self.openai.model
        return {
            "device": "server", "model": name, "model_sha256": None,
            "precision": "as served", "concurrency": self.cfg.concurrency,
            "request_timeout_s": self.cfg.request_timeout_s,
            "versions": {"aiohttp": importlib.metadata.version("aiohttp")},
            "server": proto, "problems": list(self.problems),
        }  # fmt: skip

    def close(self) -> None:
        """Close the connections and the loop (idempotent)."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.close()

    # -- requests (on the loop) ---------------------------------------------------------------

    async def send(self, n: int) -> None:
        """One KServe request of ``n`` samples (raises ServerRequestError)."""
        assert self.kserve is not None
        await self.kserve.infer(self.loop_thread.session, n, self.cfg.request_timeout_s)

    async def generate(self, index: int, on_first_token: Callable[[], None] | None) -> Generation:
        """One streamed OpenAI sample (raises ServerRequestError)."""
        if self.openai is None:
            msg = "not a streaming backend"
            raise ServerRequestError(msg, lost=False)
        timeout = self.cfg.request_timeout_s
        return await self.openai.generate(self.loop_thread.session, index, timeout, on_first_token)

    def sut(self, recorder: QueryRecorder, lg: Any, *, max_batch: int) -> NetworkSut:
        """The SUT of one LoadGen test on this server."""
        return NetworkSut(self, recorder=recorder, calls=LoadgenCalls.of(lg), max_batch=max_batch)
