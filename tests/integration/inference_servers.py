"""Small real inference servers for the network SUT's tests and benchmarks.

- ``kserve``: the KServe v2 HTTP protocol (JSON, and Triton's binary tensor extension when
  started with ``--binary``) in front of infergy's built-in ``tiny`` ONNX model, run by ONNX
  Runtime in a thread pool;
- ``openai``: an OpenAI-compatible ``/v1/completions`` and ``/v1/chat/completions`` that
  streams ``--tokens`` tokens per request, the first after ``--ttft-ms``, the others every
  ``--tpot-ms``.

Both count what they served (``GET /stats``: requests, samples or tokens, the most requests in
flight at once, the client connections seen) and can fail on purpose ``--fail-after-s S``
seconds after their first inference request: ``--fail-mode die`` exits abruptly (connections
reset), ``hang`` never answers again. Run ``python -m tests.integration.inference_servers
kserve --port 0``: the first stdout line is ``port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
_ORT_TYPES = {"tensor(float)": "FP32", "tensor(float16)": "FP16", "tensor(int64)": "INT64"}
_NP = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64}
HEADER_LENGTH = "Inference-Header-Content-Length"


class Faults:
    """``--fail-after-s``: die or hang that long after the first inference request.

    Also counts what the tests check: requests in flight at most, connections seen.
    """

    def __init__(self, args: argparse.Namespace, stats: dict[str, Any]) -> None:
        self.after_s, self.mode = args.fail_after_s, args.fail_mode
        self.first: float | None = None
        self.stats = stats
        stats.update(max_in_flight=0, connections=0)
        self._in_flight = 0
        self._peers: set[Any] = set()

    async def before(self, r: web.Request) -> None:
        now = time.monotonic()
        self.first = self.first or now
        peer = r.transport.get_extra_info("peername") if r.transport is not None else None
        self._peers.add(peer)
        self.stats["connections"] = len(self._peers)
        self._in_flight += 1
        self.stats["max_in_flight"] = max(self.stats["max_in_flight"], self._in_flight)
        if self.after_s is not None and now - self.first >= self.after_s:
            if self.mode == "die":
                os._exit(3)
            await asyncio.Event().wait()  # never answers

    def done(self) -> None:
        self._in_flight -= 1


def kserve_app(args: argparse.Namespace) -> web.Application:
    import onnxruntime as ort  # noqa: PLC0415

    from infergy.runners.models import materialize_tiny  # noqa: PLC0415

    spec = materialize_tiny(Path(tempfile.gettempdir()) / "infergy-test-models")
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(spec.path), options, providers=["CPUExecutionProvider"])
    pool = ThreadPoolExecutor(max_workers=args.workers)
    stats: dict[str, Any] = {"requests": 0, "samples": 0}
    faults = Faults(args, stats)

    def tensor_meta(t: Any) -> dict[str, Any]:
        shape = [d if isinstance(d, int) else -1 for d in t.shape]
        return {"name": t.name, "datatype": _ORT_TYPES[t.type], "shape": shape}

    metadata = {
        "name": "tiny", "versions": ["1"], "platform": "onnxruntime_onnx",
        "inputs": [tensor_meta(t) for t in session.get_inputs()],
        "outputs": [tensor_meta(t) for t in session.get_outputs()],
    }  # fmt: skip
    extensions = ["binary_tensor_data"] if args.binary else []

    async def server_meta(_r: web.Request) -> web.Response:
        return web.json_response(
            {"name": "infergy-test-kserve", "version": "1", "extensions": extensions}
        )

    async def ready(_r: web.Request) -> web.Response:
        return web.Response(status=200)

    async def model_meta(r: web.Request) -> web.Response:
        if r.match_info["name"] != "tiny":
            return web.json_response({"error": "unknown model"}, status=404)
        return web.json_response(metadata)

    async def infer(r: web.Request) -> web.Response:
        if r.match_info["name"] != "tiny":
            return web.json_response({"error": "unknown model"}, status=404)
        await faults.before(r)
        try:
            return await _infer(r)
        finally:
            faults.done()

    async def _infer(r: web.Request) -> web.Response:
        raw = await r.read()
        head_len = r.headers.get(HEADER_LENGTH)
        head = json.loads(raw[: int(head_len)] if head_len else raw)
        feeds, offset = {}, int(head_len or 0)
        for item in head["inputs"]:
            dtype = _NP[item["datatype"]]
            size = (item.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                arr = np.frombuffer(raw[offset : offset + size], dtype=dtype)
                offset += size
            else:
                arr = np.asarray(item["data"], dtype=dtype)
            feeds[item["name"]] = arr.reshape(item["shape"])
        loop = asyncio.get_running_loop()
        outs = await loop.run_in_executor(pool, session.run, None, feeds)
        n = int(next(iter(feeds.values())).shape[0])
        stats["requests"] += 1
        stats["samples"] += n
        names = [o.name for o in session.get_outputs()]
        binary = any(
            (o.get("parameters") or {}).get("binary_data") for o in head.get("outputs") or []
        )
        if binary:
            blobs = [np.ascontiguousarray(o).tobytes() for o in outs]
            reply = {"model_name": "tiny", "outputs": [
                {"name": nm, "datatype": "FP32", "shape": list(o.shape),
                 "parameters": {"binary_data_size": len(b)}}
                for nm, o, b in zip(names, outs, blobs, strict=True)
            ]}  # fmt: skip
            body = json.dumps(reply).encode()
            return web.Response(body=body + b"".join(blobs), headers={HEADER_LENGTH: str(len(body))},
                                content_type="application/octet-stream")  # fmt: skip
        reply = {"model_name": "tiny", "outputs": [
            {"name": nm, "datatype": "FP32", "shape": list(o.shape), "data": o.ravel().tolist()}
            for nm, o in zip(names, outs, strict=True)
        ]}  # fmt: skip
        return web.json_response(reply)

    async def get_stats(_r: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_get("/v2", server_meta)
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_get("/v2/models/{name}", model_meta)
    app.router.add_get("/v2/models/{name}/ready", ready)
    app.router.add_post("/v2/models/{name}/infer", infer)
    app.router.add_get("/stats", get_stats)
    return app


def openai_app(args: argparse.Namespace) -> web.Application:
    stats: dict[str, Any] = {"requests": 0, "tokens": 0}
    faults = Faults(args, stats)

    async def models(_r: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "infergy-test-llm", "object": "model"}]}
        )

    async def completions(r: web.Request) -> web.StreamResponse:
        chat = r.path.endswith("/chat/completions")
        body = await r.json()
        if args.refuse_stream_options and "stream_options" in body:
            return web.json_response(
                {"error": {"message": "unknown field stream_options"}}, status=400
            )
        if body.get("model") != "infergy-test-llm":
            return web.json_response({"error": {"message": "no such model"}}, status=404)
        await faults.before(r)
        try:
            return await _stream(r, body, chat)
        finally:
            faults.done()

    async def _stream(r: web.Request, body: dict[str, Any], chat: bool) -> web.StreamResponse:
        n = min(int(body.get("max_tokens") or 16), args.tokens)
        stats["requests"] += 1
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(r)
        await asyncio.sleep(args.ttft_ms / 1000)
        for i in range(n):
            if i:
                await asyncio.sleep(args.tpot_ms / 1000)
            piece = {"delta": {"content": f" tok{i}"}} if chat else {"text": f" tok{i}"}
            event = {"object": "chat.completion.chunk" if chat else "text_completion",
                     "choices": [{"index": 0, **piece, "finish_reason": None}]}  # fmt: skip
            await resp.write(f"data: {json.dumps(event)}\n\n".encode())
        stats["tokens"] += n
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": n,
                                              "total_tokens": 8 + n}}  # fmt: skip
            await resp.write(f"data: {json.dumps(usage)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def get_stats(_r: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/stats", get_stats)
    return app


async def _serve(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    sockets = site._server.sockets  # type: ignore[union-attr]  # the port actually bound
    print(f"port {sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["kserve", "openai"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--binary", action="store_true", help="kserve: advertise binary tensors")
    p.add_argument("--threads", type=int, default=1, help="kserve: ONNX Runtime intra-op threads")
    p.add_argument("--workers", type=int, default=2, help="kserve: concurrent inferences")
    p.add_argument("--tokens", type=int, default=16, help="openai: tokens per request at most")
    p.add_argument("--ttft-ms", type=float, default=20.0)
    p.add_argument("--tpot-ms", type=float, default=5.0)
    p.add_argument("--refuse-stream-options", action="store_true")
    p.add_argument("--fail-after-s", type=float, default=None)
    p.add_argument("--fail-mode", choices=["die", "hang"], default="die")
    args = p.parse_args(argv)
    app = kserve_app(args) if args.kind == "kserve" else openai_app(args)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(app, args.port))


@contextlib.contextmanager
def running(kind: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start a server in a subprocess; yields it and its port; stops it at the end."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.inference_servers", kind, *args],
        stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("port "):
            msg = f"the {kind} test server did not start (rc {proc.poll()})"
            raise RuntimeError(msg)
        yield proc, int(line.split()[1])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def stats(port: int) -> dict[str, Any]:
    """The server's counts (``GET /stats``)."""
    import urllib.request  # noqa: PLC0415

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def wait_until(pred: Any, timeout_s: float = 30.0) -> None:
    """Poll ``pred`` until it is true."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            msg = "timed out"
            raise TimeoutError(msg)
        time.sleep(0.05)


if __name__ == "__main__":
    main()
