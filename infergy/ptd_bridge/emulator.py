"""An emulated power analyzer on a pseudo-terminal, with injectable faults.

:class:`AnalyzerEmulator` opens a pty, puts its slave side in raw mode at once (no echo race)
and answers on it as the instrument would (:mod:`.instrument`): real pyserial opens the path
and talks to it like to a USB-serial adapter. One thread owns the pty and the instrument; the
methods below are thread-safe and may be called from tests, the control socket
(:mod:`.emulator_control`) or the ``infergy analyzer-sim`` command.

Faults, as a real set-up produces them:

- :meth:`~AnalyzerEmulator.unplug`: the pty closes (the reader gets EIO, the path disappears)
  and, after ``seconds``, a new one appears where ``link`` points (as udev re-creates
  ``/dev/serial/by-id/...`` on replug); the instrument comes back in its power-on state;
- :meth:`~AnalyzerEmulator.garbage`: the next replies are replaced by random bytes;
- :meth:`~AnalyzerEmulator.stall`: nothing is answered for a while; commands queue up and are
  answered afterwards, in order (the instrument kept measuring);
- :meth:`~AnalyzerEmulator.slow`: every reply leaves ``delay_s`` late and the instrument takes
  no command meanwhile.

Every update carries a sequence number (:meth:`~AnalyzerEmulator.updates`) for loss checks.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import threading
import time
import tty
from collections import deque
from pathlib import Path
from types import TracebackType

from infergy.errors import InputError
from infergy.ptd_bridge.analyzers.specs import MODELS
from infergy.ptd_bridge.instrument import Instrument
from infergy.ptd_bridge.instrument_scpi import Interpreter
from infergy.ptd_bridge.watts_profile import WattsProfile

EMULATED_MODELS = ("wt310", "wt310e", "wt333e", "wt210")
_NS = 1_000_000_000


class AnalyzerEmulator:
    """A Yokogawa analyzer on a pty (use as a context manager, or :meth:`start`/:meth:`stop`).

    Args:
        model: ``wt310``, ``wt310e``, ``wt333e`` (3 elements) or ``wt210``.
        profile: the true power over time (default: constant ``watts``).
        watts: constant power when no profile is given (W).
        volts: rms voltage (V).
        pf: power factor.
        noise: relative standard deviation of each update's power.
        rate_s: update interval at power-on (the bridge sets its own with ``:RATE``).
        settle_updates: updates before autorange moves.
        link: a stable path (symlink) to the current pty, kept across unplug/replug.
        seed: noise and garbage seed.
        encode_sequence: element 1 reports ``100 + (seq mod 1000) / 10`` W (loss checks).
    """

    def __init__(
        self,
        model: str = "wt310",
        *,
        profile: WattsProfile | None = None,
        watts: float = 100.0,
        volts: float = 230.0,
        pf: float = 0.95,
        noise: float = 0.0,
        rate_s: float = 0.25,
        settle_updates: int = 2,
        link: str | os.PathLike[str] | None = None,
        seed: int = 0,
        encode_sequence: bool = False,
    ) -> None:
        if model not in EMULATED_MODELS:
            msg = f"cannot emulate {model!r}"
            raise InputError(msg, hint=f"choose one of: {', '.join(EMULATED_MODELS)}")
        self.model = model
        self.profile = profile or WattsProfile.constant(watts)
        self.instrument = Instrument(
            MODELS[model], self.profile, volts=volts, pf=pf, noise=noise, seed=seed,
            rate_s=rate_s, settle_updates=settle_updates, encode_sequence=encode_sequence,
        )  # fmt: skip
        self._interpreter = Interpreter(self.instrument)
        self.link = None if link is None else Path(link)
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._master = self._slave = -1
        self._pts = ""
        self.t0_mono_ns = time.monotonic_ns()
        self._inbuf = b""
        self._messages: deque[str] = deque()
        self._current: deque[str] | None = None
        self._replies: list[str] = []
        self._replug_at: float | None = None
        self._stall_until = self._busy_until = 0.0
        self._slow_delay_s, self._slow_until = 0.0, 0.0
        self._delayed: deque[tuple[float, bytes]] = deque()
        self._garbage_left = 0
        self._updates: deque[tuple[int, int, float]] = deque(maxlen=1 << 16)  # 1.8 h at 10 Hz
        self.counters = {"replies": 0, "garbage_sent": 0, "dropped_bytes": 0, "unplugs": 0}

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """Where to open the analyzer: the stable link if one was asked for, else the pty."""
        return str(self.link) if self.link is not None else self._pts

    @property
    def plugged(self) -> bool:
        """Whether the pty exists now."""
        return self._master >= 0

    def start(self) -> str:
        """Open the pty and start answering; returns :attr:`path`."""
        self._wake_r, self._wake_w = os.pipe()
        self.t0_mono_ns = time.monotonic_ns()
        with self._lock:
            self._open_pty()
        self._thread = threading.Thread(target=self._loop, name="analyzer-sim", daemon=True)
        self._thread.start()
        return self.path

    def stop(self) -> None:
        """Stop answering and close the pty (idempotent)."""
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            self._close_pty()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> AnalyzerEmulator:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def now_s(self) -> float:
        """Emulator time: seconds since :meth:`start` (the profile's time axis)."""
        return (time.monotonic_ns() - self.t0_mono_ns) / _NS

    def to_monotonic_ns(self, t_s: float) -> int:
        """Emulator time -> ``time.monotonic_ns()`` scale."""
        return self.t0_mono_ns + round(t_s * _NS)

    # -- live control (thread-safe) -------------------------------------------------------------

    def set_watts(self, watts: float) -> None:
        """From now on, a constant ``watts`` (a step in the profile)."""
        with self._lock:
            self.profile.set_from(self.now_s(), watts)

    def set_volts(self, volts: float) -> None:
        """From the next update on, ``volts``."""
        with self._lock:
            self.instrument.volts = volts

    def unplug(self, seconds: float | None = None) -> None:
        """Pull the cable: the pty closes; it comes back after ``seconds`` (never if None)."""
        with self._lock:
            self._close_pty()
            self.counters["unplugs"] += 1
            self._replug_at = None if seconds is None else self.now_s() + seconds
        self._wake()

    def plug(self) -> None:
        """Plug the cable back in now (a new pty; the instrument in its power-on state)."""
        with self._lock:
            if not self.plugged:
                self._open_pty()
            self._replug_at = None
        self._wake()

    def garbage(self, replies: int = 1) -> None:
        """Replace the next ``replies`` replies with random bytes."""
        with self._lock:
            self._garbage_left += replies

    def stall(self, seconds: float) -> None:
        """Answer nothing for ``seconds``; queued commands are answered afterwards."""
        with self._lock:
            self._stall_until = max(self._stall_until, self.now_s() + seconds)

    def slow(self, delay_s: float, duration_s: float | None = None) -> None:
        """Delay every reply by ``delay_s`` (for ``duration_s``, else until cleared)."""
        with self._lock:
            self._slow_delay_s = delay_s
            self._slow_until = float("inf") if duration_s is None else self.now_s() + duration_s

    def clear_faults(self) -> None:
        """End stalls, slowness and pending garbage (an unplugged pty stays unplugged)."""
        with self._lock:
            self._stall_until = self._slow_until = 0.0
            self._garbage_left = 0
        self._wake()

    def updates(self) -> list[tuple[int, int, float]]:
        """Every update so far: (sequence number, monotonic ns it was released, total W)."""
        with self._lock:
            return list(self._updates)

    def status(self) -> dict[str, str]:
        """The instrument's state, for the control socket and tests."""
        with self._lock:
            ins = self.instrument
            return {
                "seq": str(ins.seq),
                "watts": f"{self.profile.watts_at(self.now_s()):g}",
                "volts": f"{ins.volts:g}",
                "rate_ms": f"{round(ins.rate_s * 1000)}",
                "volt_range": f"{ins.vrange[0]:g}",
                "current_range": f"{ins.arange[0]:g}",
                "volts_auto": str(int(ins.volts_auto)),
                "amps_auto": str(int(ins.amps_auto)),
                "plugged": str(int(self.plugged)),
                "path": self.path,
            }

    # -- the pty --------------------------------------------------------------------------------

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # before anyone opens it: no echo, no line discipline
        os.set_blocking(master, False)
        self._master, self._slave, self._pts = master, slave, os.ttyname(slave)
        self._inbuf, self._messages, self._current, self._replies = b"", deque(), None, []
        self._delayed.clear()
        self.instrument.reset(self.now_s())
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self._pts)
            tmp.replace(self.link)

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                now = self.now_s()
                self._tick(now)
                timeout = max(0.0, self._next_wakeup(now) - now)
                fds = [self._wake_r] + ([self._master] if self.plugged else [])
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except (OSError, ValueError):  # an fd closed by unplug() meanwhile
                continue
            with self._lock:
                if self._wake_r in ready:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
                if self.plugged and self._master in ready:
                    self._receive()

    def _next_wakeup(self, now: float) -> float:
        times = [self.instrument.next_update_s(), now + 1.0]
        times += [t for t in (self._stall_until, self._busy_until) if t > now]
        times += [t for t, _ in list(self._delayed)[:1]]
        if self._replug_at is not None:
            times.append(self._replug_at)
        return min(times)

    def _tick(self, now: float) -> None:
        if self._replug_at is not None and now >= self._replug_at:
            self._replug_at = None
            self._open_pty()
        if not self.plugged:
            self.instrument.advance(now)  # the profile goes on; readings are lost
            return
        if self.instrument.advance(now):
            ins = self.instrument
            self._updates.append((ins.seq, time.monotonic_ns(), ins.last_total_w))
        if self._slow_until and now >= self._slow_until:
            self._slow_delay_s = self._slow_until = 0.0
        while self._delayed and self._delayed[0][0] <= now:
            self._write(self._delayed.popleft()[1])
        self._process(now)

    def _receive(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except OSError:
            return
        self._inbuf += data
        *lines, self._inbuf = self._inbuf.split(b"\n")
        self._messages.extend(x.decode("ascii", "replace").rstrip("\r") for x in lines)
        self._process(self.now_s())

    def _process(self, now: float) -> None:
        while now >= self._stall_until and now >= self._busy_until:
            if self._current is None:
                if not self._messages:
                    return
                self._current = deque(self._messages.popleft().split(";"))
                self._replies = []
            if not self._interpreter.execute(self._current, self._replies, now):
                return  # waiting for an update
            self._current = None
            if self._replies:
                self._reply((";".join(self._replies) + "\r\n").encode("ascii"), now)

    def _reply(self, data: bytes, now: float) -> None:
        self.counters["replies"] += 1
        if self._garbage_left > 0:
            self._garbage_left -= 1
            self.counters["garbage_sent"] += 1
            noise = bytes(self._rng.choice(b"#$%&*@!?~^\x80\x9f\xfe\xff0123456789,;E+-")
                          for _ in range(max(8, len(data) - 2)))  # fmt: skip
            data = noise + b"\r\n"
        if self._slow_delay_s > 0:
            self._busy_until = now + self._slow_delay_s
            self._delayed.append((self._busy_until, data))
        else:
            self._write(data)

    def _write(self, data: bytes) -> None:
        try:
            os.write(self._master, data)
        except BlockingIOError:
            self.counters["dropped_bytes"] += len(data)  # nobody reads: the bytes are lost
        except OSError:
            pass
