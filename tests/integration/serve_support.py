"""``infergy serve`` as a real subprocess for the fault tests, and the mounts they need.

::

    serve = ServeProcess(tmp_path, stop_timeout_s=2).start()    # waits for /healthz
    run_id = serve.submit({"scenario": "single-stream", "duration": 3})
    serve.wait_state(run_id, {"ok"})
    rc, took_s = serve.stop()                                  # SIGTERM, exit code, seconds

``tmpfs(path, size)`` and ``read_only(path)`` mount a small filesystem or a read-only bind
mount for the disk-fault tests; both skip the test (saying why) where mounting is not allowed.
``AnalyzerChain`` runs ``infergy analyzer-sim`` behind ``infergy ptd-bridge`` (two processes,
a pty between them), its faults scripted through the emulator's control socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.mosquitto import free_port

ROOT = Path(__file__).resolve().parents[2]
QUICK_JOB = {
    "backend": "onnxruntime", "scenario": "single-stream", "duration": 2, "idle": 0.5,
    "warmup": 0.5,
}  # fmt: skip
"""A real session of a few seconds on the CPU."""


class ServeProcess:
    """An ``infergy serve`` subprocess on a free loopback port, its log in ``tmp/serve.log``.

    Args:
        tmp: its folder (config, store, results and log unless placed elsewhere).
        store: the store file (default ``tmp/store.db``).
        output: the results folder (default ``tmp/out``).
        stop_timeout_s: ``[serve] stop_timeout_s``.
        mqtt_port: a broker to publish to (``None``: MQTT off).
        extra: more TOML, appended to the config (whole sections).
        meters: the ``[meters]`` section's lines.
        node: its ``node_name`` (its MQTT topics, ``infergy/<node>/...``).
    """

    def __init__(
        self,
        tmp: Path,
        *,
        store: Path | None = None,
        output: Path | None = None,
        stop_timeout_s: float = 20,
        mqtt_port: int | None = None,
        extra: str = "",
        meters: str = "rapl = false\nsimulated_gpus = 1\n",
        node: str = "t1",
    ) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.store = store or tmp / "store.db"
        self.output = output or tmp / "out"
        self.config = tmp / "infergy.toml"
        mqtt = (
            f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {mqtt_port}\n'
            "reconnect_min_s = 0.2\nreconnect_max_s = 1.0\n"
            if mqtt_port is not None
            else "[mqtt]\nenabled = false\n"
        )
        self.config.write_text(
            f'node_name = "{node}"\n[store]\npath = "{self.store}"\n[output]\ndir = "{self.output}"\n'
            f"[meters]\n{meters}"
            f'[serve]\nlisten = "127.0.0.1:{self.port}"\nstop_timeout_s = {stop_timeout_s}\n'
            f"{mqtt}{extra}",
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[str] | None = None

    def popen(self) -> subprocess.Popen[str]:
        """Start the process (not waiting for it to serve)."""
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        with (self.tmp / "serve.log").open("a", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "infergy", "serve", "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, env=env, text=True, cwd=self.tmp,
            )  # fmt: skip
        return self.proc

    def start(self, timeout_s: float = 30) -> ServeProcess:
        """Start it and wait until ``/healthz`` answers."""
        self.popen()
        return self.start_wait(timeout_s)

    def start_wait(self, timeout_s: float = 30) -> ServeProcess:
        """Wait until the process :meth:`popen` started answers ``/healthz``."""
        proc = self.proc
        assert proc is not None, "popen() first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited with {proc.returncode}: {self.log()}")
            with contextlib.suppress(OSError):
                if self.get("/healthz")[0] in (200, 503):
                    return self
            time.sleep(0.1)
        raise AssertionError(f"serve did not start within {timeout_s} s: {self.log()}")

    def log(self) -> str:
        """Everything it logged so far (all its lifetimes in ``tmp``)."""
        return (self.tmp / "serve.log").read_text(encoding="utf-8")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """(status, decoded JSON body) of one HTTP request."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, method=method,
            headers={"Content-Type": content_type},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw or b"null")
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def get(self, path: str) -> tuple[int, Any]:
        """A GET request."""
        return self.request("GET", path)

    def submit(self, job: dict[str, Any]) -> str:
        """POST a job; its run id (the test fails unless it was accepted)."""
        status, body = self.request("POST", "/v1/runs", json.dumps(job).encode())
        assert status == 202, f"job refused with {status}: {body}"
        return str(body["run_id"])

    def wait_state(self, run_id: str, states: set[str], timeout_s: float = 60) -> dict[str, Any]:
        """Poll ``GET /v1/runs/<id>`` until its state is one of ``states``; the body."""
        deadline = time.monotonic() + timeout_s
        body: Any = None
        while time.monotonic() < deadline:
            status, body = self.get(f"/v1/runs/{run_id}")
            if status == 200 and body.get("state") in states:
                return dict(body)
            time.sleep(0.2)
        raise AssertionError(f"{run_id} never reached {states} (last: {body}): {self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> tuple[int, float]:
        """Send ``sig``; (exit code, seconds until it exited)."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout_s)
        return rc, time.monotonic() - t0

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def ensure_stopped(self) -> None:
        """SIGKILL it if it still runs (test teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


def _mount(args: list[str], what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (mount); run the suite as root to include this test")
    out = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30, check=False)
    if out.returncode != 0:
        pytest.skip(f"{what}: mount is not allowed here: {out.stderr.strip()}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=False)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``256k``, ``2m``) mounted on ``path`` for the block."""
    path.mkdir(parents=True, exist_ok=True)
    _mount(["-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], "a small tmpfs")
    try:
        yield path
    finally:
        _umount(path)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` made read-only for the block by a read-only bind mount onto itself."""
    path.mkdir(parents=True, exist_ok=True)
    _mount(["--bind", str(path), str(path)], "a read-only bind mount")
    try:
        _mount(["-o", "remount,bind,ro", str(path)], "a read-only bind mount")
        yield path
    finally:
        _umount(path)


def fill(folder: Path, leave_bytes: int) -> Path:
    """Fill the filesystem of ``folder`` until about ``leave_bytes`` are free; the filler."""
    filler = folder / "filler.bin"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with filler.open("wb") as f, contextlib.suppress(OSError):
        f.write(b"\0" * max(0, free - leave_bytes))
    return filler


def send_signal(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    """Signal a process that may already have exited."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)


class AnalyzerChain:
    """``infergy analyzer-sim`` (a WT310 on a pty) behind ``infergy ptd-bridge`` on a free port.

    Args:
        tmp: its folder (pty link, control socket, the bridge's console and ``-l`` log).
        watts: the emulated constant power.
        rate: the emulator's update interval at power-on.
    """

    def __init__(self, tmp: Path, *, watts: float = 200.0, rate: str = "250ms") -> None:
        self.tmp = tmp
        self.control = tmp / "sim.sock"
        self.console = tmp / "bridge-console.txt"
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.sim = subprocess.Popen(
            [sys.executable, "-m", "infergy", "analyzer-sim", "--rate", rate, "--watts",
             str(watts), "--link", str(tmp / "tty"), "--control", str(self.control)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.bridge: subprocess.Popen[str] | None = None
        assert self.sim.stdout is not None
        tty = self.sim.stdout.readline().strip()  # its first line: the pty's path
        with self.console.open("w", encoding="utf-8") as console:
            self.bridge = subprocess.Popen(
                [sys.executable, "-m", "infergy.ptd_bridge", "-l", str(tmp / "ptd.log"),
                 "-p", "0", "49", tty],
                stdout=console, stderr=subprocess.STDOUT, text=True, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        self.port = 0
        while not self.port:
            found = re.search(r"Establishing the listener on port (\d+)", self.console_text())
            if found:
                self.port = int(found.group(1))
            elif time.monotonic() > deadline or self.bridge.poll() is not None:
                self.close()
                raise AssertionError(f"the bridge did not start: {self.console_text()}")
            else:
                time.sleep(0.1)

    def console_text(self) -> str:
        """The bridge's console so far."""
        return self.console.read_text(encoding="utf-8", errors="replace")

    def command(self, line: str) -> str:
        """One control command to the emulator (``fault unplug``, ``plug``...); its reply."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.control))
            s.sendall(line.encode() + b"\n")
            reply = s.makefile().readline().strip()
        assert reply.startswith("ok"), reply
        return reply

    def close(self) -> None:
        """SIGTERM both programs and reap them."""
        for proc in (self.bridge, self.sim):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.communicate(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
