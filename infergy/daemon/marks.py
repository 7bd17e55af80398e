"""Phase marks from a measured command: a FIFO named by ``$INFERGY_MARK``, one line a mark.

``infergy measure`` creates the FIFO in a private directory and passes its path to the
command, which brackets its own phases by writing lines to it::

    echo "begin load" > "$INFERGY_MARK"
    ./load-the-model
    echo "end load" > "$INFERGY_MARK"

Each line is ``begin NAME`` or ``end NAME`` (NAME: 1-100 letters, digits, ``._:/-``); phases
nest and overlap freely. A line is stamped on the session clock when it is read (the reader
polls the FIFO continuously; a write of a short line is atomic, so lines from several
processes never mix). Lines that do not parse, an ``end`` without its ``begin`` and a phase
begun twice are reported, never fatal. The reader holds the FIFO open for writing too, so a
writer never blocks and an ``echo`` after the last reader closed it does not hang.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from infergy.errors import InfergyError

ENV_VAR = "INFERGY_MARK"
PHASE_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,100}")
MAX_LINE_BYTES = 512
POLL_S = 0.05
MAX_PROBLEMS = 20


class MarkReader:
    """The FIFO and its reader thread; ``with MarkReader(begin, end) as marks:``.

    Args:
        begin: opens a phase (``Measurement.begin_window``).
        end: ends a phase (``Measurement.end_window``).
    """

    def __init__(self, begin: Callable[[str], object], end: Callable[[str], object]) -> None:
        self._begin, self._end = begin, end
        self._tmp = tempfile.TemporaryDirectory(prefix="infergy-measure-")
        self.path = Path(self._tmp.name) / "mark"
        """The FIFO (give it to the command as ``$INFERGY_MARK``)."""
        os.mkfifo(self.path, 0o600)
        # O_RDWR: the FIFO always has a writer (us), so reads never see EOF between writers
        # and a writer's open() never blocks waiting for a reader.
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._buffer = b""
        self._line_no = 0
        self.open_phases: list[str] = []
        """Phases begun and not yet ended, in begin order."""
        self.problems: list[str] = []
        self.marks = 0
        """Lines applied."""
        self._thread = threading.Thread(target=self._run, name="infergy-marks", daemon=True)

    def __enter__(self) -> MarkReader:
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def drain(self) -> None:
        """Apply every line written so far (call after the command exited)."""
        with self._lock:
            self._read_available()

    def close(self) -> None:
        """Stop reading (lines not yet read are dropped) and remove the FIFO (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        self._tmp.cleanup()

    # -- the reader thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._fd], [], [], POLL_S)
            except (OSError, ValueError):
                return
            if ready:
                with self._lock:
                    self._read_available()

    def _read_available(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                return
            if not chunk:
                return
            self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\n")
            if len(self._buffer) > MAX_LINE_BYTES:
                self._problem(f"mark line {self._line_no + 1}: longer than {MAX_LINE_BYTES} bytes")
                self._buffer = b""
            for raw in lines:
                self._line_no += 1
                self._apply(raw)

    def _apply(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return
        verb, _, name = text.partition(" ")
        name = name.strip()
        where = f"mark line {self._line_no} ({text[:60]!r})"
        if verb not in ("begin", "end") or not PHASE_NAME.fullmatch(name):
            self._problem(f"{where}: not understood; write 'begin NAME' or 'end NAME'")
            return
        try:
            if verb == "begin":
                self._begin(name)
                self.open_phases.append(name)
            else:
                self._end(name)
                self.open_phases.remove(name)
        except InfergyError as err:
            self._problem(f"{where}: {err}")
            return
        self.marks += 1

    def _problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append("more mark problems were not listed")
