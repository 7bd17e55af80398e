"""Shared helpers for the PTD bridge tests: a raw PTD client, an emulator+bridge rig, polling."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from infergy.core.clock import SessionClock
from infergy.ptd_bridge.analyzers.specs import device_type
from infergy.ptd_bridge.bridge import BridgeConfig
from infergy.ptd_bridge.emulator import AnalyzerEmulator
from infergy.ptd_bridge.server import PtdBridge


class RawClient:
    """A bare PTDaemon client over real TCP: one request, its reply lines (all of an RL)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def line(self) -> str:
        async with asyncio.timeout(10):
            raw = await self.reader.readline()
        assert raw.endswith(b"\r\n"), f"reply not CRLF-terminated: {raw!r}"
        return raw[:-2].decode("ascii")

    async def req(self, request: str, *, eol: str = "\r\n") -> list[str]:
        self.writer.write((request + eol).encode())
        await self.writer.drain()
        first = await self.line()
        out = [first]
        if first.startswith("Last "):
            out += [await self.line() for _ in range(int(first.split()[1]))]
        return out

    async def one(self, request: str) -> str:
        lines = await self.req(request)
        assert len(lines) == 1, lines
        return lines[0]

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def wait_for(
    predicate: Callable[[], bool], timeout_s: float = 10.0, step_s: float = 0.02
) -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(step_s)


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path,
    *,
    model: str = "wt310",
    device: int = 49,
    interval_ms: int = 100,
    channels: tuple[int, ...] | None = None,
    log: bool = True,
    clock: SessionClock | None = None,
    **emulator_kwargs: object,
) -> AsyncIterator[tuple[AnalyzerEmulator, PtdBridge]]:
    """An emulator on a pty (behind a stable link) and a bridge on a free loopback port."""
    emulator_kwargs.setdefault("rate_s", interval_ms / 1000)
    emu = AnalyzerEmulator(model, link=tmp_path / "ttyEMU0", **emulator_kwargs)  # type: ignore[arg-type]
    emu.start()
    config = BridgeConfig(
        device_type(device), emu.path, channels=channels, interval_ms=interval_ms,
        reply_timeout_s=0.5, connect_timeout_s=5, backoff_max_s=0.5,
    )  # fmt: skip
    console = (tmp_path / "console.txt").open("w", encoding="utf-8")
    try:
        async with PtdBridge(
            config, port=0, console=console, log_path=tmp_path / "ptd.log" if log else None,
            clock=clock,
        ) as bridge:  # fmt: skip
            yield emu, bridge
    finally:
        emu.stop()
        console.close()


def console_text(tmp_path: Path) -> str:
    return (tmp_path / "console.txt").read_text(encoding="utf-8")
