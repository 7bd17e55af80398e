"""The KServe v2 / Triton HTTP inference protocol, client side, for the network SUT.

``--endpoint http://host:8000/v2/models/NAME[/versions/V]``. At load: the server's metadata
(``GET /v2``), readiness (``GET /v2/health/ready``, then the model's ``/ready``) and the
model's metadata (its inputs: name, datatype, shape). Inputs are generated once per batch size
from the seed and encoded once (the QSL's resident inputs: the encoding is not part of what is
measured), as JSON, or with Triton's binary tensor extension when the server lists
``binary_tensor_data``. A batch of ``n`` samples is one ``POST .../infer`` with the batch
dimension set to ``n``; a model without a batch dimension takes one sample per request.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np

from infergy.errors import ModelError, ServerRequestError, WorkloadError
from infergy.runners.network.client import error_reply, request_failed

_MODEL_PATH = re.compile(r"^(?P<prefix>.*)/v2/models/(?P<name>[^/]+)(?:/versions/(?P<v>[^/]+))?/?$")
DTYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip
"""KServe v2 tensor datatypes infergy can generate inputs for (not BYTES)."""
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class TensorSpec:
    """One model input as the server describes it."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass
class KServeModel:
    """A model on a KServe v2 server, ready to take batches.

    Attributes:
        url: the model's URL (``.../v2/models/NAME[/versions/V]``).
        base: the server's root URL.
        name: the model's name.
        inputs: its inputs.
        batched: whether the first dimension is the batch (``-1``).
        binary: whether requests use Triton's binary tensor extension.
        server: the server's metadata (name, version, extensions).
        metadata: the model's metadata.
    """

    url: str
    base: str
    name: str
    inputs: tuple[TensorSpec, ...] = ()
    batched: bool = True
    binary: bool = False
    server: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    _bodies: dict[int, tuple[bytes, dict[str, str]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, endpoint: str) -> KServeModel:
        """The model named by an endpoint URL.

        Raises:
            WorkloadError: not an http(s) URL of the form ``.../v2/models/NAME``.
        """
        url = endpoint.rstrip("/")
        parts = urlsplit(url)
        match = _MODEL_PATH.match(parts.path)
        if parts.scheme not in ("http", "https") or not parts.netloc or match is None:
            msg = f"not a KServe v2 model URL: {endpoint!r}"
            raise WorkloadError(msg, hint="use http://HOST:PORT/v2/models/NAME")
        base = f"{parts.scheme}://{parts.netloc}{match.group('prefix')}"
        return cls(url=url, base=base, name=match.group("name"))

    async def load(self, session: aiohttp.ClientSession, timeout_s: float) -> None:
        """Read the server's and the model's metadata; check both are ready.

        Raises:
            WorkloadError: the server cannot be reached or the model is not ready.
            ModelError: an input infergy cannot generate (BYTES, variable dimensions).
        """
        self.server = await self._get_json(session, f"{self.base}/v2", timeout_s, optional=True)
        await self._get_json(session, f"{self.base}/v2/health/ready", timeout_s, optional=True)
        await self._get_json(session, f"{self.url}/ready", timeout_s, optional=True)
        self.metadata = await self._get_json(session, self.url, timeout_s)
        self.binary = "binary_tensor_data" in (self.server.get("extensions") or [])
        specs = []
        for item in self.metadata.get("inputs") or []:
            dtype, shape = str(item.get("datatype")), tuple(int(d) for d in item.get("shape", []))
            if dtype not in DTYPES:
                msg = f"model {self.name}: input {item.get('name')!r} is {dtype}"
                raise ModelError(msg, hint="infergy generates numeric tensors only (not BYTES)")
            specs.append(TensorSpec(str(item["name"]), dtype, shape))
        if not specs:
            msg = f"model {self.name}: its metadata lists no inputs"
            raise ModelError(msg, hint=f"check GET {self.url}")
        self.batched = all(s.shape[:1] == (-1,) for s in specs)
        for s in specs:
            if any(d < 0 for d in (s.shape[1:] if self.batched else s.shape)):
                msg = (
                    f"model {self.name}: input {s.name!r} has a variable dimension {list(s.shape)}"
                )
                raise ModelError(msg, hint="serve a model with fixed sample shapes")
        self.inputs = tuple(specs)

    async def _get_json(
        self, session: aiohttp.ClientSession, url: str, timeout_s: float, *, optional: bool = False
    ) -> dict[str, Any]:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                if resp.status == 404 and optional:
                    return {}  # an optional endpoint this server does not have
                if resp.status >= 400:
                    raise await error_reply(resp, f"GET {url}")
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ServerRequestError, ValueError) as err:
            failed = request_failed(err, f"GET {url}", timeout_s)
            msg = f"cannot use the KServe server: {failed}"
            raise WorkloadError(msg, hint="is the server running, and the model loaded?") from None
        return data if isinstance(data, dict) else {}

    @property
    def max_batch(self) -> int | None:
        """None: any batch; 1: a model without a batch dimension."""
        return None if self.batched else 1

    def body(self, n: int) -> tuple[bytes, dict[str, str]]:
        """The request of a batch of ``n`` samples (made once per ``n``, then reused)."""
        cached = self._bodies.get(n)
        if cached is not None:
            return cached
        rng = np.random.default_rng(self.seed)
        tensors = []
        for s in self.inputs:
            shape = (n, *s.shape[1:]) if self.batched else s.shape
            dtype = DTYPES[s.datatype]
            if np.issubdtype(dtype, np.floating):
                data = rng.random(shape, dtype=np.float32).astype(dtype)
            else:
                data = rng.integers(0, 2, size=shape).astype(dtype)
            tensors.append((s, shape, data))
        outputs = [str(o["name"]) for o in self.metadata.get("outputs") or [] if "name" in o]
        if self.binary:
            header = {
                "inputs": [
                    {"name": s.name, "shape": list(shape), "datatype": s.datatype,
                     "parameters": {"binary_data_size": int(data.nbytes)}}
                    for s, shape, data in tensors
                ],
                "outputs": [{"name": o, "parameters": {"binary_data": True}} for o in outputs],
            }  # fmt: skip
            head = json.dumps(header).encode()
            payload = head + b"".join(data.tobytes() for _, _, data in tensors)
            headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))}
        else:
            body = {
                "inputs": [
                    {"name": s.name, "shape": list(shape), "datatype": s.datatype,
                     "data": data.ravel().tolist()}
                    for s, shape, data in tensors
                ]
            }  # fmt: skip
            payload = json.dumps(body).encode()
            headers = {"Content-Type": "application/json"}
        self._bodies[n] = (payload, headers)
        return payload, headers

    async def infer(self, session: aiohttp.ClientSession, n: int, timeout_s: float) -> None:
        """Send one batch of ``n`` samples and read the whole reply.

        Raises:
            ServerRequestError: the request failed (``lost`` when the server did not answer).
        """
        payload, headers = self.body(n)
        what = f"POST {self.url}/infer"
        try:
            async with session.post(f"{self.url}/infer", data=payload, headers=headers) as resp:
                if resp.status != 200:
                    raise await error_reply(resp, what)
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise request_failed(err, what, timeout_s) from None
        head_len = resp.headers.get(HEADER_LENGTH)
        head = raw[: int(head_len)] if head_len and head_len.isdigit() else raw
        try:
            reply = json.loads(head)
        except ValueError:
            msg = f"{what}: the reply is not KServe v2 JSON"
            raise ServerRequestError(msg, lost=False) from None
        if not isinstance(reply, dict) or "outputs" not in reply:
            detail = reply.get("error") if isinstance(reply, dict) else None
            msg = f"{what}: the reply has no outputs" + (f" ({detail})" if detail else "")
            raise ServerRequestError(msg, lost=False)

    def describe(self) -> dict[str, Any]:
        """Provenance: the server and the model as they describe themselves."""
        return {
            "endpoint": self.url,
            "protocol": "kserve-v2",
            "encoding": "binary" if self.binary else "json",
            "server": self.server,
            "model_metadata": self.metadata,
        }
