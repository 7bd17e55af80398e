"""A real mosquitto broker for the tests: free loopback port, temp config, stop/kill/restart.

::

    broker = Mosquitto.start(tmp_path)          # skips the test when mosquitto is missing
    broker.kill(); broker.restart()             # SIGKILL, then the same port again
    broker.stop()

The config has ``set_tcp_nodelay true`` (else retained messages reach a new subscriber ~40 ms
late: Nagle plus delayed ACK) and ``user root`` (mosquitto run as root drops privileges to
user ``mosquitto`` and then cannot write its log in a 0700 temp dir). Startup is detected by
a TCP connect *and* the process still running: a busy port makes mosquitto exit with rc 1
while another broker on that port would accept the connect.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto")
START_TIMEOUT_S = 5.0
_PERSISTENT = (
    "persistence true|persistence_location {dir}/|autosave_interval 1|autosave_on_changes true"
)


def mosquitto_binary() -> str | None:
    """The mosquitto executable, or ``None`` when it is not installed."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """One mosquitto process on a fixed loopback port, restartable on the same port."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        port: int,
        extra_conf: str = "",
        *,
        persistent: bool = False,
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = port
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        lines = [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "user root" if os.geteuid() == 0 else "",
            "set_tcp_nodelay true",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            # persistent: sessions, subscriptions, queued and retained messages saved on every
            # change, so even a SIGKILLed broker comes back with them
            *(_PERSISTENT.format(dir=workdir).split("|") if persistent else ["persistence false"]),
            extra_conf,
        ]
        self.conf.write_text("\n".join(line for line in lines if line) + "\n", encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls, workdir: Path, *, extra_conf: str = "", persistent: bool = False, run: bool = True
    ) -> Mosquitto:
        """A broker on a free port (started unless ``run`` is false); skip if it is missing."""
        binary = mosquitto_binary()
        if binary is None:
            pytest.skip("mosquitto is not installed (Debian: apt-get install mosquitto)")
        workdir.mkdir(parents=True, exist_ok=True)
        broker = cls(binary, workdir, free_port(), extra_conf, persistent=persistent)
        if run:
            broker.restart()
        return broker

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def restart(self) -> None:
        """(Re)start on the same port; wait until it accepts connections."""
        if self.running:
            self.stop()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self._wait_accepting(deadline):
                return
            # It exited: the port is still held by the old socket (rare) or something else.
            err = self._reap()
            if time.monotonic() > deadline:
                pytest.fail(f"mosquitto did not start on port {self.port}: {err}")
            time.sleep(0.05)

    def _wait_accepting(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if not self.running:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return self.running
            time.sleep(0.005)
        return False

    def _reap(self) -> str:
        assert self.proc is not None
        _, err = self.proc.communicate(timeout=5)
        log = self.log.read_text(errors="replace") if self.log.exists() else ""
        return (err.decode(errors="replace") + log).strip()[-500:]

    def stop(self) -> None:
        """SIGTERM and wait (a clean exit: clients see a disconnect)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and wait (an abrupt death)."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=5)
        finally:
            if self.proc.stderr is not None:
                self.proc.stderr.close()


@contextlib.contextmanager
def running_broker(
    workdir: Path, *, extra_conf: str = "", persistent: bool = False, run: bool = True
) -> Iterator[Mosquitto]:
    """A broker (started unless ``run`` is false), killed at the end whatever happens."""
    broker = Mosquitto.start(workdir, extra_conf=extra_conf, persistent=persistent, run=run)
    try:
        yield broker
    finally:
        broker.kill()
