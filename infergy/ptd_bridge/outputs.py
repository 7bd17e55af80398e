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
import threading
from pathlib import Path
from typing import TextIO

from infergy.core.clock import SessionClock
from infergy.errors import InputError
from infergy.formats.ptd import format_console_line, format_status_line

QUEUE_LINES = 100_000


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
        """A console line (``ERROR: ``/``WARNING: `` prefixed) and a log status line."""
        now = self._clock.now_ns()
        prefix = "" if level == "NOTICE" else f"{level}: "
        self._console.write(format_console_line(now, prefix + text))
        if self._log is not None:
            self._log.write(format_status_line(now, level, text))

    def log(self, line: str) -> None:
        """A data line in the ``-l`` log (nothing without ``-l``)."""
        if self._log is not None:
            self._log.write(line)

    def close(self) -> None:
        """Flush and stop both writers."""
        if self._log is not None:
            self._log.close()
        self._console.close()
