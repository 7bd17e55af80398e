"""``serve_http`` on a real loopback socket: raw requests, the exposure rule, clean shutdown."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from infergy.daemon.http_api import build_app, is_loopback, serve_http
from infergy.daemon.scheduler import JobScheduler
from infergy.errors import ConfigError
from tests.unit.daemon.fakes import FakeSessions


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def raw(port: int, request: bytes) -> tuple[int, dict[str, object]]:
    """Send bytes as they are (no client-side path normalisation) and parse the answer."""
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")  # not to EOF: the body may be unsent
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await reader.readexactly(length)
        writer.close()
        await writer.wait_closed()
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.1", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org", "lab-host"])
def test_exposed_hosts(host: str) -> None:
    assert not is_loopback(host)


def test_serving_beyond_loopback_without_a_token_is_refused() -> None:
    app = build_app(JobScheduler(FakeSessions()), token=None, max_body_bytes=1024)
    with pytest.raises(ConfigError, match="beyond loopback") as info:
        asyncio.run(serve_http(app, "0.0.0.0", free_port(), token_set=False))
    assert "token_file" in (info.value.hint or "")


def test_a_taken_port_is_a_config_error() -> None:
    app = build_app(JobScheduler(FakeSessions()), token=None, max_body_bytes=1024)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            asyncio.run(serve_http(app, "127.0.0.1", port, token_set=False))


def test_a_real_server_answers_raw_requests_and_stops_when_cancelled() -> None:
    port = free_port()

    async def main() -> None:
        fake = FakeSessions(auto=True)
        scheduler = JobScheduler(fake)
        app = build_app(scheduler, token="t" * 32, max_body_bytes=1024)
        async with asyncio.timeout(10), asyncio.TaskGroup() as tg:
            tg.create_task(scheduler.run(), name="infergy-scheduler")
            listening = asyncio.Event()
            server = tg.create_task(
                serve_http(app, "127.0.0.1", port, token_set=True, listening=listening),
                name="infergy-http",
            )
            await listening.wait()
            status, body = await raw(
                port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert status == 200
            # an unnormalised traversal, as a hostile client would send it
            status, body = await raw(
                port,
                b"GET /v1/runs/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            assert status in (400, 404)
            assert "errors" in body
            spec = json.dumps({"scenario": "offline", "duration": 1}).encode()
            head = (
                "POST /v1/runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(spec)}\r\n"
            ).encode()
            status, body = await raw(port, head + b"\r\n" + spec)
            assert status == 401
            status, body = await raw(
                port, head + b"Authorization: Bearer " + b"t" * 32 + b"\r\n\r\n" + spec
            )
            assert status == 202
            # announced as too large: refused without reading the body
            big = head.replace(f"Content-Length: {len(spec)}".encode(), b"Content-Length: 999999")
            status, body = await raw(
                port, big + b"Authorization: Bearer " + b"t" * 32 + b"\r\n\r\n"
            )
            assert status == 413
            server.cancel()
            await scheduler.drain(timeout_s=1)
        assert server.cancelled()
        with pytest.raises(OSError):  # the port is closed again
            await raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")

    asyncio.run(main())
