"""The ``$INFERGY_MARK`` FIFO: lines from shells and processes become phases, misuse is reported."""

from __future__ import annotations

import os
import subprocess
import time

from infergy.daemon.marks import ENV_VAR, MarkReader
from infergy.errors import WindowError


class Book:
    """begin/end recorders that refuse misuse the way Measurement does."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.open: set[str] = set()

    def begin(self, name: str) -> None:
        if name in self.open:
            msg = f"window {name!r} is already open"
            raise WindowError(msg)
        self.open.add(name)
        self.events.append(("begin", name))

    def end(self, name: str) -> None:
        if name not in self.open:
            msg = f"window {name!r} was never begun"
            raise WindowError(msg)
        self.open.remove(name)
        self.events.append(("end", name))


def _wait_for(pred, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_shell_brackets_nested_phases_through_the_fifo():
    book = Book()
    with MarkReader(book.begin, book.end) as marks:
        script = (
            'echo "begin load" > "$INFERGY_MARK"; echo "begin load/io" > "$INFERGY_MARK"; '
            'echo "end load/io" > "$INFERGY_MARK"; echo "end load" > "$INFERGY_MARK"'
        )
        env = {**os.environ, ENV_VAR: str(marks.path)}
        subprocess.run(["sh", "-c", script], env=env, check=True, timeout=10)
        _wait_for(lambda: len(book.events) == 4)
    assert book.events == [
        ("begin", "load"), ("begin", "load/io"), ("end", "load/io"), ("end", "load"),
    ]  # fmt: skip
    assert marks.problems == [] and marks.marks == 4 and marks.open_phases == []
    assert not marks.path.exists()  # the FIFO and its directory are removed


def test_lines_split_across_writes_and_from_several_writers_are_whole():
    book = Book()
    with MarkReader(book.begin, book.end) as marks:
        fd = os.open(marks.path, os.O_WRONLY)
        os.write(fd, b"beg")
        time.sleep(0.1)  # the reader sees half a line first
        os.write(fd, b"in a\nend a\n")
        os.close(fd)
        procs = [
            subprocess.Popen(["sh", "-c", f'echo "begin w{i}" > "$M"; echo "end w{i}" > "$M"'],
                             env={**os.environ, "M": str(marks.path)})
            for i in range(8)
        ]  # fmt: skip
        for p in procs:
            assert p.wait(10) == 0
        marks.drain()
        _wait_for(lambda: len(book.events) == 18)
    assert book.events[:2] == [("begin", "a"), ("end", "a")]
    assert marks.problems == []


def test_misuse_is_reported_line_by_line_and_never_fatal():
    book = Book()
    with MarkReader(book.begin, book.end) as marks:
        fd = os.open(marks.path, os.O_WRONLY)
        lines = ["end never", "begin x", "begin x", "hello", "begin bad name!", "", "begin ok"]
        os.write(fd, ("\n".join(lines) + "\n").encode())
        os.write(fd, b"begin " + b"y" * 600 + b"\n")
        os.close(fd)
        _wait_for(lambda: len(marks.problems) >= 5)
        marks.drain()
    joined = "\n".join(marks.problems)
    assert "mark line 1 ('end never'): window 'never' was never begun" in joined
    assert "mark line 3 ('begin x'): window 'x' is already open" in joined
    assert "mark line 4 ('hello'): not understood" in joined
    assert "mark line 5 ('begin bad name!'): not understood" in joined
    assert marks.problems[-1].startswith("mark line 8 ('begin yyy")  # a 600-character name
    assert marks.problems[-1].endswith("not understood; write 'begin NAME' or 'end NAME'")
    assert marks.open_phases == ["x", "ok"]  # left open: the caller ends them with the command
