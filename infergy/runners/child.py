"""The LoadGen process: ``python -m infergy.runners.child STATE_DIR``.

Why a process: LoadGen pre-schedules every query and has no abort API, so a Server run cannot
be stopped early from inside; killing a process can. The parent
(:class:`~infergy.runners.workload.Workload`) sends one JSON command per line on stdin
(``open``, ``warmup``, ``run``, ``simulate``, ``close``, ``abort``) and reads one JSON reply
per line from the file descriptor that was stdout at start; the process's own fd 1 and 2 are
pointed at stderr (the parent's ``child.log``), so LoadGen's and the libraries' prints never
corrupt the replies. ``abort`` (or EOF on stdin: the parent is gone) is handled on a reader thread
while the main thread may be blocked in LoadGen: the current records are flushed and the
process exits at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from infergy.errors import InfergyError
from infergy.runners.engine import Engine
from infergy.runners.types import WorkloadConfig

ABORT_EXIT = 3


def error_reply(err: BaseException) -> dict[str, Any]:
    """An error as a reply the parent turns back into the same infergy error."""
    if isinstance(err, InfergyError):
        return {
            "ok": False, "type": type(err).__name__, "message": str(err), "hint": err.hint,
            "exit_code": err.exit_code, "largest_batch": getattr(err, "largest_batch", None),
        }  # fmt: skip
    return {
        "ok": False, "type": "WorkloadFailedError",
        "message": f"{type(err).__name__}: {err}", "hint": "see runner/child.log", "exit_code": 1,
    }  # fmt: skip


class Child:
    """The command loop (main thread) and the stdin reader (abort, EOF)."""

    def __init__(self, state_dir: Path, reply_fd: int) -> None:
        self.state_dir = state_dir
        self._reply = os.fdopen(reply_fd, "w", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()
        self._commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.engine: Engine | None = None

    def send(self, msg: dict[str, Any]) -> None:
        """One reply line."""
        with self._lock:
            self._reply.write(json.dumps(msg) + "\n")

    def read_stdin(self) -> None:
        """Reader thread: commands to the queue; ``abort`` and EOF end the process now."""
        for line in sys.stdin:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("cmd") == "abort":
                self._exit_now({"event": "aborted"})
            self._commands.put(msg)
        self._exit_now(None)  # EOF: the parent went away

    def _exit_now(self, last: dict[str, Any] | None) -> None:
        rec = None if self.engine is None else self.engine.current_recorder
        if rec is not None:
            with contextlib.suppress(Exception):  # exiting anyway: best effort
                rec.flush()
        if last is not None:
            with contextlib.suppress(Exception):
                self.send(last)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(ABORT_EXIT)

    def _records_failed(self, path: Path, err: OSError) -> None:
        """The record file cannot be written (a full disk): fail the phase now, not at its end."""
        self.send({
            "ok": False, "type": "WorkloadFailedError",
            "message": f"cannot write the query records to {path}: {err.strerror or err}",
            "hint": "check that [output] dir is writable and has free space", "exit_code": 1,
        })  # fmt: skip
        self._exit_now(None)

    def serve(self) -> None:
        """Run commands until ``close``."""
        while True:
            msg = self._commands.get()
            cmd = msg.get("cmd")
            try:
                result = self._do(cmd, msg)
            except BaseException as err:
                if not isinstance(err, InfergyError):  # expected errors say it all themselves
                    traceback.print_exc()
                self.send(error_reply(err))
            else:
                self.send({"ok": True, "result": result})
            if cmd == "close":
                return

    def _do(self, cmd: object, msg: dict[str, Any]) -> Any:
        if cmd == "open":
            self.engine = Engine(WorkloadConfig.from_json(msg["cfg"]), self.state_dir)
            self.engine.on_record_error = self._records_failed
            return self.engine.open()
        if cmd == "close":
            if self.engine is not None:
                self.engine.close()
            return None
        if self.engine is None:
            msg_ = f"command {cmd!r} before open"
            raise RuntimeError(msg_)
        if cmd == "warmup":
            return self.engine.warmup(float(msg["duration_s"])).to_json()
        if cmd == "run":
            r = self.engine.run(Path(msg["loadgen_dir"]))
            return {"settings": r.settings, "failure": r.failure, "failures": r.failures,
                    "wall_offset_ns": r.wall_offset_ns, "records": len(r.records),
                    "attempts": [a.to_json() for a in r.attempts],
                    "notes": r.notes, "network": r.network}  # fmt: skip
        if cmd == "describe":
            return self.engine.describe()
        if cmd == "simulate":
            return self.engine.simulate(dict(msg["settings"]))
        msg_ = f"unknown command {cmd!r}"
        raise RuntimeError(msg_)


def main(argv: list[str]) -> int:
    """Entry point; fd 1 at start is the reply channel."""
    reply_fd = os.dup(1)
    os.dup2(2, 1)  # anything printed from here on (LoadGen, libraries) goes to the log
    sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", closefd=False)
    child = Child(Path(argv[1]), reply_fd)
    threading.Thread(target=child.read_stdin, name="infergy-child-stdin", daemon=True).start()
    child.send({"event": "ready", "pid": os.getpid()})
    child.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
