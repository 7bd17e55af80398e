"""An OpenAI-compatible completions endpoint (vLLM, TensorRT-LLM, llama.cpp...), streaming.

``--endpoint http://host:8000/v1`` (``/v1/completions``) or ``.../v1/chat/completions``.
Each LoadGen sample is one streamed request (``"stream": true``) for its prompt: the first
chunk that carries text is the first token (LoadGen's ``FirstTokenComplete``), the end of the
stream the sample's completion, with the number of tokens the server reports
(``usage.completion_tokens``, asked for with ``stream_options.include_usage``) or, when it does
not, the number of chunks that carried text. ``temperature`` is 0.

Prompts: ``--prompts FILE`` (one per line) or built-in generated ones (deterministic from the
seed); sample index ``i`` uses prompt ``i mod len``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from infergy.errors import InputError, ServerRequestError, WorkloadError
from infergy.runners.network.client import error_reply, request_failed

_WORDS = (
    "river", "stone", "engine", "garden", "lantern", "orbit", "signal", "meadow", "harbor",
    "circuit", "falcon", "winter", "compass", "beacon", "canyon", "ember", "glacier", "violin",
)  # fmt: skip
BUILTIN_PROMPTS = 64


@dataclass(frozen=True)
class Generation:
    """One streamed sample: tokens produced and when its first and last ones arrived."""

    tokens: int
    first_token_ns: int | None
    done_ns: int


@dataclass
class OpenAIModel:
    """A model behind an OpenAI-compatible API.

    Attributes:
        url: the completions URL requests go to.
        base: the API root (``.../v1``).
        chat: whether the endpoint is ``chat/completions``.
        model: the model name sent with every request (``--model``, else the server's first).
        max_tokens: tokens asked for per sample.
        prompts: the prompts, by sample index modulo their number.
        usage: whether the server reports token usage in the stream.
    """

    url: str
    base: str
    chat: bool
    model: str | None = None
    max_tokens: int = 128
    prompts: list[str] = field(default_factory=list)
    usage: bool = True
    models: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, endpoint: str, *, model: str, max_tokens: int) -> OpenAIModel:
        """The API an endpoint URL names.

        Raises:
            WorkloadError: not an http(s) URL ending in ``/v1``, ``/completions`` or
                ``/chat/completions``.
        """
        url = endpoint.rstrip("/")
        parts = urlsplit(url)
        path = parts.path
        if parts.scheme not in ("http", "https") or not parts.netloc:
            msg = f"not an http(s) URL: {endpoint!r}"
            raise WorkloadError(msg, hint="use http://HOST:PORT/v1")
        if path.endswith("/chat/completions"):
            base, chat = url.removesuffix("/chat/completions"), True
        elif path.endswith("/completions"):
            base, chat = url.removesuffix("/completions"), False
        elif path.endswith("/v1"):
            base, chat, url = url, False, url + "/completions"
        else:
            msg = f"not an OpenAI API URL: {endpoint!r}"
            raise WorkloadError(msg, hint="use http://HOST:PORT/v1 or .../v1/chat/completions")
        name = None if model == "auto" else model
        return cls(url=url, base=base, chat=chat, model=name, max_tokens=max_tokens)

    async def load(
        self, session: aiohttp.ClientSession, timeout_s: float, prompts: Path | None, seed: int
    ) -> None:
        """List the models (choosing one if none was named), read the prompts, send one probe.

        Raises:
            WorkloadError: the server cannot be reached, has no model, or refuses the probe.
            InputError: the prompts file is unreadable or empty.
        """
        self.prompts = _read_prompts(prompts) if prompts is not None else builtin_prompts(seed)
        try:
            async with session.get(f"{self.base}/models") as resp:
                if resp.status == 200:
                    data = await resp.json(content_type=None)
                    self.models = [str(m.get("id")) for m in data.get("data") or [] if "id" in m]
                elif self.model is None:
                    raise await error_reply(resp, f"GET {self.base}/models")
        except (aiohttp.ClientError, TimeoutError, ServerRequestError, ValueError) as err:
            failed = request_failed(err, f"GET {self.base}/models", timeout_s)
            msg = f"cannot use the OpenAI-compatible server: {failed}"
            raise WorkloadError(msg, hint="is the server running at that URL?") from None
        if self.model is None:
            if not self.models:
                msg = f"the server at {self.base} lists no model"
                raise WorkloadError(msg, hint="name one with --model")
            self.model = self.models[0]
        try:
            await self.generate(session, 0, timeout_s, None)
        except ServerRequestError as err:
            if err.lost:
                msg = f"cannot use the OpenAI-compatible server: {err}"
                raise WorkloadError(msg, hint="is the server running at that URL?") from None
            self.usage = False  # some servers refuse stream_options: try without it
            try:
                await self.generate(session, 0, timeout_s, None)
            except ServerRequestError as again:
                msg = f"the server refuses a streamed completion: {again}"
                raise WorkloadError(msg, hint="check --model and the endpoint") from None

    def request(self, index: int) -> dict[str, Any]:
        """The JSON body of sample ``index``'s request."""
        prompt = self.prompts[index % len(self.prompts)]
        body: dict[str, Any] = {
            "model": self.model, "max_tokens": self.max_tokens, "temperature": 0, "stream": True,
        }  # fmt: skip
        if self.chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if self.usage:
            body["stream_options"] = {"include_usage": True}
        return body

    async def generate(
        self,
        session: aiohttp.ClientSession,
        index: int,
        timeout_s: float,
        on_first_token: Callable[[], None] | None,
    ) -> Generation:
        """Stream one sample; ``on_first_token`` is called when its first text arrives.

        Raises:
            ServerRequestError: the request or the stream failed.
        """
        what = f"POST {self.url}"
        chunks, reported, first_ns = 0, None, None
        try:
            async with session.post(self.url, json=self.request(index)) as resp:
                if resp.status != 200:
                    raise await error_reply(resp, what)
                async for raw in resp.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        break
                    event = json.loads(data)
                    if "error" in event:
                        msg = f"{what}: the stream reports an error: {event['error']}"
                        raise ServerRequestError(msg, lost=False)
                    if _text(event, self.chat):
                        chunks += 1
                        if first_ns is None:
                            first_ns = time.monotonic_ns()
                            if on_first_token is not None:
                                on_first_token()
                    usage = event.get("usage")
                    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                        reported = usage["completion_tokens"]
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise request_failed(err, what, timeout_s) from None
        except ValueError:
            msg = f"{what}: a stream event is not JSON"
            raise ServerRequestError(msg, lost=False) from None
        return Generation(reported if reported is not None else chunks, first_ns,
                          time.monotonic_ns())  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """Provenance: the endpoint, the model, what is asked per sample."""
        return {
            "endpoint": self.url, "protocol": "openai-chat" if self.chat else "openai-completions",
            "model": self.model, "models_listed": self.models, "max_tokens": self.max_tokens,
            "prompts": len(self.prompts), "usage_reported": self.usage,
        }  # fmt: skip


def _text(event: dict[str, Any], chat: bool) -> str:
    choices = event.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return ""
    if chat:
        delta = choices[0].get("delta") or {}
        return str(delta.get("content") or "")
    return str(choices[0].get("text") or "")


def builtin_prompts(seed: int, n: int = BUILTIN_PROMPTS) -> list[str]:
    """Deterministic short prompts (the same for a given seed)."""
    rng = random.Random(seed)
    return [
        f"Write a short story about a {rng.choice(_WORDS)}, a {rng.choice(_WORDS)} "
        f"and a {rng.choice(_WORDS)}."
        for _ in range(n)
    ]


def _read_prompts(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        msg = f"--prompts {path}: cannot read: {getattr(err, 'strerror', None) or err}"
        raise InputError(msg) from None
    prompts = [ln.strip() for ln in lines if ln.strip()]
    if not prompts:
        msg = f"--prompts {path}: no prompt in the file"
        raise InputError(msg, hint="one prompt per line")
    return prompts
