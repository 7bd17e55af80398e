"""sd_notify over real AF_UNIX datagram sockets (path and abstract), and the watchdog."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infergy.daemon.notify import MAX_STATUS_CHARS, Notifier

SO_TIMESTAMPNS = 35
"""Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS), which the socket module does not name."""


class Manager:
    """A stand-in for systemd's notify socket: receives and timestamps datagrams."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value
        sock.settimeout(2)

    def recv(self) -> list[str]:
        return self.sock.recv(4096).decode().split("\n")

    def record(self, stop: threading.Event) -> list[tuple[float, str]]:
        """Datagrams with the time the kernel queued them (CLOCK_REALTIME), until ``stop``.

        The kernel's timestamp (SO_TIMESTAMPNS) is when the datagram was sent, however late
        this thread gets to read it on a loaded machine.
        """
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.settimeout(0.01)
        out: list[tuple[float, str]] = []
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(16))
                sec, nsec = next(
                    struct.unpack("qq", d[:16])  # struct timespec
                    for level, kind, d in ancillary
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
                )
                out.append((sec + nsec / 1e9, data.decode()))
        return out


@pytest.fixture(params=["path", "abstract"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Manager]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        if request.param == "path":
            path = tmp_path / "notify"
            sock.bind(str(path))
            yield Manager(sock, str(path))
        else:
            name = f"infergy-test-{uuid.uuid4().hex}"
            sock.bind("\0" + name)
            yield Manager(sock, "@" + name)


def test_messages_arrive_as_systemd_expects(manager: Manager) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": manager.env_value})
    assert n.enabled
    assert n.ready("3 of 4 components up ✓")
    assert manager.recv() == ["READY=1", "STATUS=3 of 4 components up ✓"]  # UTF-8 intact
    assert n.status("measuring\nrun 42")
    assert manager.recv() == ["STATUS=measuring run 42"]  # one line
    assert n.stopping()
    assert manager.recv() == ["STOPPING=1"]
    assert n.reloading("reloading")
    reload_msg = manager.recv()
    assert reload_msg[0] == "RELOADING=1"
    assert reload_msg[1].startswith("MONOTONIC_USEC=")
    usec = int(reload_msg[1].split("=")[1])
    assert abs(usec - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 2_000_000
    assert n.extend_timeout(12.5)
    assert manager.recv() == ["EXTEND_TIMEOUT_USEC=12500000"]
    assert n.ping()
    assert manager.recv() == ["WATCHDOG=1"]
    assert n.sent == 6


def test_long_status_is_cut(manager: Manager) -> None:
    Notifier(manager.env_value).status("x" * 5000)
    (line,) = manager.recv()
    assert line == "STATUS=" + "x" * MAX_STATUS_CHARS


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}])
def test_outside_systemd_everything_is_a_no_op(env: dict[str, str]) -> None:
    n = Notifier.from_env(env)
    assert not n.enabled
    assert not n.ready("x")
    assert not n.ping()
    assert n.watchdog_interval_s is None
    asyncio.run(asyncio.wait_for(n.watchdog(), 1))  # returns at once


def test_a_vanished_socket_warns_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier(str(tmp_path / "gone"))
    assert not n.ready()
    assert not n.status("still here")
    assert [r.message for r in caplog.records if "cannot notify" in r.message] == [
        f"cannot notify systemd at {tmp_path / 'gone'}: [Errno 2] No such file or directory"
    ]


def test_watchdog_interval_is_half_the_timeout_and_honours_watchdog_pid(manager: Manager) -> None:
    env = {"NOTIFY_SOCKET": manager.env_value, "WATCHDOG_USEC": "30000000"}
    assert Notifier.from_env(env).watchdog_interval_s == 15.0
    mine = {**env, "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_env(mine).watchdog_interval_s == 15.0
    other = {**env, "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_env(other).watchdog_interval_s is None
    assert Notifier.from_env({**env, "WATCHDOG_USEC": "junk"}).watchdog_interval_s is None
    assert Notifier.from_env({**env, "WATCHDOG_USEC": "0"}).watchdog_interval_s is None


def test_the_watchdog_pings_from_the_loop_and_a_stuck_loop_stops_it(manager: Manager) -> None:
    interval_s = 0.02
    n = Notifier(manager.env_value, watchdog_usec=int(2 * interval_s * 1e6))

    async def until_sent(count: int) -> None:
        async with asyncio.timeout(10):  # a loaded machine is slow, not stuck
            while n.sent < count:
                await asyncio.sleep(0.005)

    async def main() -> tuple[float, float]:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(n.watchdog(), name="infergy-watchdog")
            await until_sent(5)
            blocked_at = time.time()  # realtime: the kernel stamps the datagrams with it
            time.sleep(0.3)  # a stuck loop: blocking call on the event loop
            unblocked_at = time.time()
            await until_sent(n.sent + 2)
            task.cancel()
        return blocked_at, unblocked_at

    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        recording = pool.submit(manager.record, stop)
        blocked_at, unblocked_at = asyncio.run(main())
        stop.set()
        pings = recording.result()
    assert all(text == "WATCHDOG=1" for _, text in pings), pings
    times = [t for t, _ in pings]
    assert len([t for t in times if t < blocked_at]) >= 5, f"pings before the block: {times}"
    during = [
        round(t - blocked_at, 3) for t in times if blocked_at + 0.01 < t < unblocked_at - 0.01
    ]
    assert not during, f"pings sent while the loop was blocked, at +{during} s"
    assert len([t for t in times if t > unblocked_at]) >= 2, f"no pings after it: {times}"
