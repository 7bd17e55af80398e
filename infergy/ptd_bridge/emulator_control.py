r"""The emulator's control socket: script power and faults live over a UNIX stream socket.

One command per line, one reply line each (``ok ...`` or ``error: ...``)::

    watts 250              constant 250 W from now on
    volts 120              120 V from the next update on
    fault unplug 3         the pty disappears, comes back 3 s later (no number: stays away)
    plug                   plug it back in now
    fault garbage [N]      the next N replies (default 1) are random bytes
    fault stall 2          answer nothing for 2 s (commands queue, answered afterwards)
    fault slow 0.05 [D]    every reply 50 ms late (for D seconds, default until cleared)
    fault clear            end stall, slowness and pending garbage
    status                 seq=... watts=... volt_range=... (key=value pairs)

Example: ``printf 'watts 250\\n' | socat - UNIX-CONNECT:/tmp/sim.sock``.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
from pathlib import Path

from infergy.ptd_bridge.emulator import AnalyzerEmulator

_MAX_LINE = 1024


def apply_control_line(emulator: AnalyzerEmulator, line: str) -> str:
    """Run one control command against ``emulator``; return the reply line."""
    words = line.split()
    try:
        return _apply(emulator, words)
    except (ValueError, IndexError):
        return f"error: cannot parse {line.strip()!r} (try: watts 250, fault unplug 3, status)"


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


def _apply(emu: AnalyzerEmulator, words: list[str]) -> str:  # noqa: PLR0912 (one branch a command)
    if not words:
        return "error: empty command"
    verb, args = words[0].lower(), words[1:]
    if verb == "watts":
        emu.set_watts(_number(args[0]))
    elif verb == "volts":
        emu.set_volts(_number(args[0]))
    elif verb == "plug":
        emu.plug()
    elif verb == "status":
        return "ok " + " ".join(f"{k}={v}" for k, v in emu.status().items())
    elif verb == "fault":
        kind, rest = args[0].lower(), args[1:]
        if kind == "unplug":
            emu.unplug(_number(rest[0]) if rest else None)
        elif kind == "garbage":
            emu.garbage(int(rest[0]) if rest else 1)
        elif kind == "stall":
            emu.stall(_number(rest[0]))
        elif kind == "slow":
            emu.slow(_number(rest[0]), _number(rest[1]) if len(rest) > 1 else None)
        elif kind == "clear":
            emu.clear_faults()
        else:
            return f"error: unknown fault {kind!r} (unplug, garbage, stall, slow, clear)"
    else:
        return f"error: unknown command {verb!r} (watts, volts, plug, fault, status)"
    return "ok"


class ControlServer:
    """Serves :func:`apply_control_line` on a UNIX socket, one thread, clients one at a time.

    Args:
        emulator: the emulator to control.
        path: the socket path (replaced if a stale socket is there).
    """

    def __init__(self, emulator: AnalyzerEmulator, path: str | os.PathLike[str]) -> None:
        self.emulator = emulator
        self.path = Path(path)
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and start serving."""
        with contextlib.suppress(FileNotFoundError):
            if self.path.is_socket():
                self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        sock.listen(4)
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(
            target=self._serve, name="analyzer-sim.control", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and remove the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        buf = b""
        while not self._stop.is_set():
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            if len(buf) > _MAX_LINE and b"\n" not in buf:
                conn.sendall(b"error: line too long\n")
                return
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                reply = apply_control_line(self.emulator, raw.decode("utf-8", "replace"))
                conn.sendall(reply.encode() + b"\n")
