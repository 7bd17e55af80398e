"""A fair bridge (issue 20, item 5): one client must not cost another its samples.

Real processes (``infergy analyzer-sim`` behind ``infergy ptd-bridge``) and real TCP clients:
while one client measures (``Go,1000``, ``RL`` every second) another pipelines 100,000
requests and never reads a reply. The measuring client must get every sample (no -2, no -1),
the flooder must be closed, and the console must not grow by a line per flooded request.
Repeated analyzer warnings (an unplugged analyzer's "Missed 1 samples" four times a second)
are counted on the console, not repeated.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.serve_support import AnalyzerChain

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MEASURE_S = 8


class _Client:
    """A blocking PTD client: one request, its reply lines."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def _line(self) -> str:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "the bridge closed the measuring client"
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line.decode()

    def close(self) -> None:
        self.sock.close()

    def req(self, request: str) -> list[str]:
        self.sock.sendall(request.encode() + b"\r\n")
        first = self._line()
        if first.startswith("Last "):
            return [first, *(self._line() for _ in range(int(first.split()[1])))]
        return [first]


def _flood(port: int, out: dict[str, Any]) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"RL\r\n" * 100_000)  # pipelined; not one reply is ever read
            while not out.get("stop"):
                s.sendall(b"RL\r\n" * 100)
                time.sleep(0.1)
    except OSError as err:
        out["closed"] = type(err).__name__


def test_a_flooding_client_costs_a_measuring_client_no_sample(tmp_path: Path) -> None:
    chain = AnalyzerChain(tmp_path, watts=250.0)
    flood: dict[str, Any] = {}
    try:
        measuring = _Client(chain.port)
        assert measuring.req("Go,1000,0,measure")[0].startswith("Starting untimed")
        time.sleep(1.0)
        flooder = threading.Thread(target=_flood, args=(chain.port, flood), daemon=True)
        flooder.start()
        watts: list[float] = []
        for _ in range(MEASURE_S):
            time.sleep(1.0)
            t0 = time.monotonic()
            reply = measuring.req("RL")
            assert time.monotonic() - t0 < 0.5, "the measuring client waited for the flooder"
            watts += [float(line.split(",Watts,")[1].split(",")[0]) for line in reply[1:]]
        flood["stop"] = True
        flooder.join(30)
        assert measuring.req("Stop") == ["Stopping untimed measurement"]
        measuring.close()
        late = _Client(chain.port)
        assert late.req("Hello") == ["Hello, PTDaemon here!"]  # still serving
        late.close()
    finally:
        flood["stop"] = True
        chain.close()
    console = chain.console_text()
    lost = [w for w in watts if w < 0]
    assert len(watts) >= MEASURE_S and not lost, f"{len(lost)} of {len(watts)} samples lost"
    assert "closed" in flood, "the flooder was never closed"
    assert "Closing the connection from" in console and "requests/s" in console, console[-2000:]
    assert console.count("\n") < 2000, f"the console grew to {console.count(chr(10))} lines"


def test_repeated_analyzer_warnings_are_counted_not_repeated(tmp_path: Path) -> None:
    chain = AnalyzerChain(tmp_path, watts=250.0, rate="250ms")
    try:
        client = _Client(chain.port)
        assert client.req("Go,250,0,unplug")[0].startswith("Starting untimed")
        time.sleep(1.0)
        chain.command("fault unplug")
        time.sleep(5.0)  # 20 missed updates, each one a "Missed 1 samples" warning
        chain.command("plug")
        deadline = time.monotonic() + 20
        while "Reconnected" not in chain.console_text():  # its backoff is at most 5 s
            assert time.monotonic() < deadline, chain.console_text()
            time.sleep(0.2)
        client.req("Stop")
        client.close()
    finally:
        chain.close()
    console = chain.console_text()
    shown = console.count("WARNING: Missed")
    assert 1 <= shown <= 4, console  # REPEAT_BURST, then one line with the count
    counted = console.index("more 'Missed # samples' messages were not shown")
    assert counted < console.index("Reconnected"), console  # said when the next line is shown
    assert "Missed" in (tmp_path / "ptd.log").read_text(), "the -l log keeps every status line"
