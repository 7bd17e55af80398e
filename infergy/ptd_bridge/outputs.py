"""The bridge's two text outputs: the console (stdout) and the ``-l`` data log.

Both are read by other programs while the bridge runs (MLPerf's server reads the log during a
run and captures the console), so every line is written whole and flushed at once, also when
stdout is a pipe. Writes happen on a writer thread behind a bounded queue: a reader that stops
reading, or a slow disk, never blocks the event loop that serves the clients; if the queue
overflows, lines are dropped and the drop is reported in the output itself.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
import time
from pathlib import Path
from typing import TextIO

from infergy.core.clock import SessionClock
from infergy.errors import InputError
from infergy.formats.ptd import format_console_line, format_status_line

QUEUE_LINES = 100_000
REPEAT_WINDOW_S = 10.0
"""A status message repeated (digits aside) more than ``REPEAT_BURST`` times within this long
is shown once more with a count at the end of the window, not each time."""
REPEAT_BURST = 3


class RepeatLimiter:
    """Rate-limits repeated console lines: ``burst`` per key per ``window_s``, then counted.

    ``allow(key, now_s)`` says whether to show a line now; ``drain()`` hands over (and zeroes)
    the counts of lines suppressed since, to say so. Keys are whatever makes lines "the same".
    """

    def __init__(self, burst: int, window_s: float) -> None:
        self.burst, self.window_s = burst, window_s
        self._windows: dict[str, tuple[float, int]] = {}  # key: (window start, shown in it)
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str, now_s: float) -> bool:
        """Whether to show a line of ``key`` now (else it is counted)."""
        start, shown = self._windows.get(key, (now_s, 0))
        if now_s - start >= self.window_s:
            start, shown = now_s, 0
        if shown < self.burst:
            self._windows[key] = (start, shown + 1)
            return True
        self._suppressed[key] = self._suppressed.get(key, 0) + 1
        return False

    def drain(self) -> dict[str, int]:
        """Lines suppressed since the last drain, by key."""
        out, self._suppressed = self._suppressed, {}
        return out


def _similar(text: str) -> str:
    """The key of a status message: the same words whatever its numbers."""
    return re.sub(r"\d+(\.\d+)?", "#", text)


class LineWriter:
    """Writes lines to a text stream from its own thread, flushing after each batch.

    Args:
        stream: where to write (stdout, an open log file).
        name: the writer thread's name.
        close_stream: close ``stream`` on :meth:`close` (files we opened, not stdout).
    """

    def __init__(self, stream: TextIO, *, name: str, close_stream: bool = False) -> None:
        self._stream = stream
        self._close_stream = close_stream
        self._queue: queue.Queue[str | None] = queue.Queue(QUEUE_LINES)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def write(self, line: str) -> None:
        """Queue one line (no newline); never blocks."""
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [] if item is None else [item]
            done = item is None
            while not done:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    done = True
                else:
                    batch.append(nxt)
            if batch:
                with contextlib.suppress(OSError, ValueError):
                    self._stream.write("".join(f"{line}\n" for line in batch))
                    self._stream.flush()
            if done:
                return

    def close(self) -> None:
        """Write what is queued, then stop (and close the stream if owned)."""
        if self.dropped:
            self.write(f"({self.dropped} lines dropped: the output was not read fast enough)")
        self._queue.put(None)
        self._thread.join(timeout=10)
        if self._close_stream:
            with contextlib.suppress(OSError):
                self._stream.close()


class BridgeOutputs:
    """Console lines (``<ts>: <message>``) and the ``-l`` log (samples, status lines).

    Args:
        clock: stamps console and status lines.
        console: the console stream (stdout).
        log_path: the ``-l`` file (appended to), or None.

    Raises:
        InputError: the log file cannot be opened.
    """

    def __init__(self, clock: SessionClock, console: TextIO, log_path: Path | None) -> None:
        self._clock = clock
        self._console = LineWriter(console, name="ptd-bridge.console")
        self._repeats = RepeatLimiter(REPEAT_BURST, REPEAT_WINDOW_S)
        self._log: LineWriter | None = None
        if log_path is not None:
            try:
                f = Path(log_path).open("a", encoding="utf-8")  # noqa: SIM115 (owned by the writer)
            except OSError as err:
                msg = f"cannot open the log file {log_path}: {err.strerror or err}"
                raise InputError(msg, hint="check the directory exists and is writable") from None
            self._log = LineWriter(f, name="ptd-bridge.log", close_stream=True)

    def banner(self, text: str) -> None:
        """A console line without a timestamp (PTDaemon's start-up banner)."""
        self._console.write(text)

    def console(self, message: str) -> None:
        """A console line ``<ts>: <message>``."""
        self._console.write(format_console_line(self._clock.now_ns(), message))

    def status(self, level: str, text: str) -> None:
        """A console line (``ERROR: ``/``WARNING: `` prefixed) and a log status line.

        The ``-l`` log gets every one. On the console a message repeated within
        ``REPEAT_WINDOW_S`` (the same words, whatever its numbers: "Missed 1 samples" every
        second of an unplugged analyzer) is shown ``REPEAT_BURST`` times, then counted.
        """
        now = self._clock.now_ns()
        prefix = "" if level == "NOTICE" else f"{level}: "
        if self._repeats.allow(f"{prefix}|{_similar(text)}", time.monotonic()):
            self._say_suppressed(now)  # before the next line shown: what was not
            self._console.write(format_console_line(now, prefix + text))
        if self._log is not None:
            self._log.write(format_status_line(now, level, text))

    def _say_suppressed(self, now_ns: int) -> None:
        for key, n in self._repeats.drain().items():
            prefix, _, words = key.partition("|")
            note = f"{prefix}({n} more '{words}' messages were not shown)"
            self._console.write(format_console_line(now_ns, note))

    def log(self, line: str) -> None:
        """A data line in the ``-l`` log (nothing without ``-l``)."""
        if self._log is not None:
            self._log.write(line)

    def close(self) -> None:
        """Flush and stop both writers."""
        self._say_suppressed(self._clock.now_ns())
        if self._log is not None:
            self._log.close()
        self._console.close()
