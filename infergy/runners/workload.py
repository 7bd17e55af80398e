"""The async facade the session orchestrator uses: :class:`Workload`.

All inference and LoadGen work happens in one child process per workload
(:mod:`infergy.runners.child`), so the asyncio loop only exchanges a few JSON lines and polls
a memory-mapped status board; cancelling a run (any scenario, Server included) aborts the
child within milliseconds and SIGKILLs it if it does not exit within a second. Files under
``out_dir``:

- ``loadgen/`` -- LoadGen's summary and detail logs of the measured run;
- ``runner/child.log`` -- the child's stderr/stdout (LoadGen and library messages);
- ``runner/queries-{warmup,run}.bin`` -- raw records (4 x int64: issue and completion
  monotonic ns, samples, device slot), flushed every 20 ms, read for progress and
  :meth:`Workload.partial`; a generative workload adds ``tokens-*.bin`` (issue, first token,
  completion, prompt and output tokens, slot) and ``phases-*.bin`` (every prefill and decode
  step: start, end, kind, tokens, batch, slot), read into the outcome's ``generation``;
- ``runner/status.bin`` -- live counters (samples in flight, queries/samples completed).

Example:
    >>> async def measure(clock: SessionClock, out: Path) -> RunOutcome:     # doctest: +SKIP
    ...     cfg = WorkloadConfig(backend="onnxruntime", duration_s=10)
    ...     wl = await Workload.open(cfg, clock, out)
    ...     try:
    ...         await wl.warmup(3.0)
    ...         return await wl.run()
    ...     finally:
    ...         await wl.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from infergy import errors
from infergy.core.clock import SessionClock
from infergy.core.gen_logs import GenerationLog
from infergy.core.trace import QueryLog
from infergy.errors import InfergyError, WorkloadFailedError
from infergy.runners.attempts import MAX_ATTEMPTS, Attempt
from infergy.runners.outcome import backend_problems, build_outcome, generation_log, query_logs
from infergy.runners.recorder import PHASE_FIELDS, TOKEN_FIELDS, StatusBoard, read_records
from infergy.runners.types import Progress, RunOutcome, WorkloadConfig

OPEN_TIMEOUT_S = 3600.0
"""Preparing may build TensorRT engines or run torch.compile: minutes, not hours."""
REPLY_TIMEOUT_S = 60.0
ABORT_GRACE_S = 1.0
PROGRESS_INTERVAL_S = 0.5
IN_FLIGHT_POLL_S = 0.001
LOG_TAIL_CHARS = 2000


def _error_from_reply(reply: dict[str, Any]) -> InfergyError:
    """The infergy error a child reported (same class, message and hint)."""
    cls = getattr(errors, str(reply.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, InfergyError)):
        cls = WorkloadFailedError
    err: InfergyError
    if cls is errors.DeviceOutOfMemoryError:
        err = cls(
            reply["message"], hint=reply.get("hint"), largest_batch=reply.get("largest_batch")
        )
    else:
        err = cls(reply["message"], hint=reply.get("hint"))
    return err


class Workload:
    """One prepared workload in its own LoadGen process; build it with :meth:`open`."""

    def __init__(
        self,
        cfg: WorkloadConfig,
        clock: SessionClock,
        out_dir: Path,
        proc: asyncio.subprocess.Process,
        on_in_flight: Callable[[int], None] | None,
        *,
        on_activity: Callable[[float], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.out_dir = out_dir
        self.state_dir = out_dir / "runner"
        self.loadgen_dir = out_dir / "loadgen"
        self._proc = proc
        self._on_in_flight = on_in_flight
        self._on_activity = on_activity
        self._status = StatusBoard(self.state_dir / "status.bin")
        self._lock = asyncio.Lock()
        self._describe: dict[str, Any] = {}
        self._phase_file: Path | None = None
        self._closed = False
        self.callback_errors = 0
        """Exceptions raised by on_progress (swallowed: a display must not end a run)."""
        # session ns = monotonic ns + this (records are stamped with the child's monotonic clock)
        self._mono_to_session = clock.wall0_ns - clock.mono0_ns

    # -- lifecycle ----------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        cfg: WorkloadConfig,
        clock: SessionClock,
        out_dir: Path,
        on_in_flight: Callable[[int], None] | None = None,
        *,
        open_timeout_s: float = OPEN_TIMEOUT_S,
        on_activity: Callable[[float], None] | None = None,
    ) -> Workload:
        """Start the LoadGen process and prepare the model on every device of ``cfg``.

        ``on_in_flight`` follows the samples in flight; ``on_activity`` the activity a
        simulated generative workload reports (its steps' power, 0-1), when it reports one.

        Raises:
            WorkloadError: (and subclasses: ModelError, PrecisionError, PlanMismatchError,
                DeviceOutOfMemoryError) bad input, exit code 2; nothing is left running.
            WorkloadFailedError: the process died or did not answer.
        """
        cfg = cfg.validate()
        state_dir = out_dir / "runner"
        await asyncio.to_thread(state_dir.mkdir, parents=True, exist_ok=True)
        StatusBoard(state_dir / "status.bin")  # created here so both sides map the same file
        log = await asyncio.to_thread((state_dir / "child.log").open, "ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "infergy.runners.child", str(state_dir),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                limit=1 << 24,
                # Its own session: a terminal's Ctrl-C reaches only us, and we end it in order
                # (aborting LoadGen, keeping the records) instead of it dying mid-write.
                start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        self = cls(cfg, clock, out_dir, proc, on_in_flight, on_activity=on_activity)
        try:
            await self._read_reply(REPLY_TIMEOUT_S)  # {"event": "ready"}
            self._describe = await self._request({"cmd": "open", "cfg": cfg.to_json()},
                                                 open_timeout_s)  # fmt: skip
        except BaseException:
            await self._kill()
            raise
        return self

    async def aclose(self) -> None:
        """Release the models and end the LoadGen process (idempotent)."""
        if self._closed:
            return
        try:
            if self._proc.returncode is None:
                with contextlib.suppress(InfergyError, TimeoutError):
                    await self._request({"cmd": "close"}, REPLY_TIMEOUT_S)
        finally:
            await self._kill()

    @property
    def closed(self) -> bool:
        """True once closed or aborted (a cancelled run ends the LoadGen process)."""
        return self._closed

    def describe(self) -> dict[str, Any]:
        """Provenance: backend and versions, model and sha256, precision, batch, devices."""
        return dict(self._describe)

    async def simulate(self, settings_by_device: dict[str, Any]) -> int:
        """Tell the simulated backends (``sim``) their boards' settings, by device name.

        Returns:
            How many backends took them (0 unless the backend is ``sim``).
        """
        taken = await self._request({"cmd": "simulate", "settings": settings_by_device},
                                    REPLY_TIMEOUT_S)  # fmt: skip
        return int(taken)

    # -- phases -------------------------------------------------------------------------------

    async def warmup(
        self, duration_s: float, on_progress: Callable[[Progress], None] | None = None
    ) -> None:
        """Run the scenario's load for ``duration_s`` unmeasured; calibrates LoadGen's settings."""
        cal = await self._phase(
            "warmup", {"cmd": "warmup", "duration_s": duration_s}, duration_s, on_progress
        )
        self._describe["calibration"] = cal

    async def run(self, on_progress: Callable[[Progress], None] | None = None) -> RunOutcome:
        """The measured LoadGen run in ``cfg.scenario``.

        Cancelling the awaiting task aborts the run (the LoadGen process is ended within about
        a second), raises CancelledError, and leaves the completed queries in :meth:`partial`;
        the workload is closed afterwards.
        """
        cmd = {"cmd": "run", "loadgen_dir": str(self.loadgen_dir)}
        await asyncio.to_thread(self.loadgen_dir.mkdir, parents=True, exist_ok=True)
        # Rejected attempts are cut at 1.2x; the kept one is bounded by LoadGen's max_duration
        # (3x) for the scenarios that honour it, by the work itself for Offline.
        budget_s = (MAX_ATTEMPTS + 3) * 1.2 * self.cfg.duration_s + 120.0
        reply = await self._phase("run", cmd, budget_s, on_progress)
        records = await asyncio.to_thread(read_records, self.state_dir / "queries-run.bin")
        outcome = await asyncio.to_thread(
            build_outcome, records, scenario=self.cfg.scenario,
            device_names=self.cfg.device_names, loadgen_dir=self.loadgen_dir,
            mono_to_session_ns=self._mono_to_session,
            mono_to_wall_ns=int(reply["wall_offset_ns"]), failure=reply.get("failure"),
            failures=int(reply.get("failures") or 0), settings=reply.get("settings"),
            backend_problems=[*backend_problems(self._describe), *(reply.get("notes") or [])],
            duration_s=self.cfg.duration_s,
            attempts=[Attempt(**a) for a in reply.get("attempts") or []],
        )  # fmt: skip
        if reply.get("network") is not None:
            outcome.loadgen["network"] = reply["network"]
        if self.cfg.generative:
            generation = await asyncio.to_thread(self._generation, "run")
            outcome = dataclasses.replace(outcome, generation=generation)
        return outcome

    def _generation(self, phase: str) -> GenerationLog:
        """A generative phase's token and phase logs, on the session clock."""
        return generation_log(
            read_records(self.state_dir / f"tokens-{phase}.bin", TOKEN_FIELDS),
            read_records(self.state_dir / f"phases-{phase}.bin", PHASE_FIELDS),
            self._mono_to_session,
            executors=max(1, len(self.cfg.gpus)) * self.cfg.workers_per_device,
            describe=self._describe,
        )

    def partial(self) -> QueryLog:
        """Queries of the measured run completed so far, on the session clock.

        Empty before :meth:`run` started (warmup queries are not part of a run).
        """
        if self._phase_file is None or self._phase_file.name != "queries-run.bin":
            return QueryLog(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        records = read_records(self._phase_file)

        def to_session(t: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray[Any, Any]:
            return t + np.int64(self._mono_to_session)

        return query_logs(records, to_session, self.cfg.device_names)[0]

    async def _phase(
        self,
        phase: str,
        cmd: dict[str, Any],
        budget_s: float,
        on_progress: Callable[[Progress], None] | None,
    ) -> Any:
        if self._closed:
            msg = "the workload is closed (a cancelled run ends it): open a new one"
            raise WorkloadFailedError(msg)
        self._phase_file = self.state_dir / f"queries-{phase}.bin"
        stop = threading.Event()
        poller = None
        if self._on_in_flight is not None:
            poller = threading.Thread(
                target=self._poll_in_flight, args=(stop,), name="infergy-in-flight", daemon=True
            )
            poller.start()
        t0 = time.monotonic()
        # A side task, not a TaskGroup: the run's own error must reach the caller as itself,
        # not wrapped in an ExceptionGroup, and the ticker never fails (callbacks are guarded).
        ticker = asyncio.create_task(
            self._progress(phase, t0, on_progress), name=f"runner-{phase}-progress"
        )
        try:
            return await self._request(cmd, budget_s + 60.0)
        except asyncio.CancelledError:
            await asyncio.shield(self._kill())
            raise
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            stop.set()
            if poller is not None:
                await asyncio.to_thread(poller.join)

    async def _progress(
        self, phase: str, t0: float, on_progress: Callable[[Progress], None] | None
    ) -> None:
        if on_progress is None:
            return
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            _, queries, samples = self._status.read()
            try:
                on_progress(Progress(phase, queries, samples, time.monotonic() - t0))
            except Exception:
                self.callback_errors += 1

    def _poll_in_flight(self, stop: threading.Event) -> None:
        cb, last = self._on_in_flight, -1
        assert cb is not None
        on_activity, last_activity = self._on_activity, None
        while not stop.wait(IN_FLIGHT_POLL_S):
            n = self._status.read()[0]
            if n != last:
                cb(n)
                last = n
            if on_activity is not None:
                activity = self._status.activity()
                if activity is not None and activity != last_activity:
                    on_activity(activity)
                    last_activity = activity
        if last != 0:
            cb(0)
        if on_activity is not None and last_activity:
            on_activity(0.0)

    # -- the pipe -----------------------------------------------------------------------------

    async def _request(self, cmd: dict[str, Any], timeout_s: float) -> Any:
        async with self._lock:
            stdin = self._proc.stdin
            if stdin is None or self._proc.returncode is not None:
                raise WorkloadFailedError(self._died("is not running"))
            stdin.write((json.dumps(cmd) + "\n").encode())
            await stdin.drain()
            reply = await self._read_reply(timeout_s)
        if not reply.get("ok", False):
            raise _error_from_reply(reply)
        return reply.get("result")

    async def _read_reply(self, timeout_s: float) -> dict[str, Any]:
        assert self._proc.stdout is not None
        try:
            async with asyncio.timeout(timeout_s):
                line = await self._proc.stdout.readline()
        except TimeoutError:
            await self._kill()
            raise WorkloadFailedError(
                self._died(f"did not answer within {timeout_s:g} s")
            ) from None
        if not line:
            await self._kill()
            raise WorkloadFailedError(self._died("exited unexpectedly"))
        msg: dict[str, Any] = json.loads(line)
        return msg

    def _died(self, what: str) -> str:
        tail = ""
        with contextlib.suppress(OSError):
            tail = (self.state_dir / "child.log").read_text(errors="replace")[-LOG_TAIL_CHARS:]
        last = next((ln for ln in reversed(tail.splitlines()) if ln.strip()), "")
        return f"the LoadGen process {what}" + (f": {last.strip()}" if last else "")

    async def _kill(self) -> None:
        """Abort the child: ask it to exit, SIGKILL after ABORT_GRACE_S, reap it."""
        self._closed = True
        proc = self._proc
        if proc.returncode is None:
            if proc.stdin is not None and not proc.stdin.is_closing():
                with contextlib.suppress(OSError, RuntimeError):
                    proc.stdin.write(b'{"cmd": "abort"}\n')
                    proc.stdin.close()
            try:
                async with asyncio.timeout(ABORT_GRACE_S):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
        elif proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
