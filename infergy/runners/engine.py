"""The synchronous core of a workload: backends on every device, warmup, one LoadGen run.

It runs inside the LoadGen process (:mod:`infergy.runners.child`) and, for benchmarks and
tests, in-process. Nothing here touches asyncio.
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from infergy.core.trace import MULTI_STREAM_SAMPLES_PER_QUERY, Scenario
from infergy.errors import InfergyError, InputError, WorkloadError, WorkloadFailedError
from infergy.formats.loadgen import load_loadgen_detail
from infergy.runners.attempts import (
    GENERATIVE_PROJECTION_FROM,
    MAX_ATTEMPTS,
    PROJECTION_FROM,
    Attempt,
    OfflineGuard,
    corrected,
    judge,
    retryable,
)
from infergy.runners.backends import Backend, create_backend
from infergy.runners.backends.gen_base import GenerativeBackend
from infergy.runners.gen_engine import attach_logs, generative_sut, generative_warmup
from infergy.runners.gen_sut import GenSut
from infergy.runners.lg_settings import (
    Calibration,
    apply_settings,
    build_settings,
    calibration_settings,
    steady_capacity,
)
from infergy.runners.models import ModelSpec, resolve_model
from infergy.runners.recorder import (
    I64,
    IN_FLIGHT,
    QUERIES_ISSUED,
    SAMPLES_DONE,
    QueryRecorder,
    StatusBoard,
)
from infergy.runners.sut import Sut, loadgen_complete
from infergy.runners.types import WorkloadConfig

if TYPE_CHECKING:
    from infergy.runners.network.sut import NetworkSut

QSL_SAMPLES = 1024
"""LoadGen's sample library: indices only (the inputs are made once per backend)."""
TIGHT_WARMUP_SHARE = 0.3
"""Offline/Server warmup: this share is a tight loop (a first estimate), the rest LoadGen."""
MIN_LOADGEN_WARMUP_S = 0.25
"""A LoadGen calibration run shorter than this measures little beyond its own start-up."""
PHASE_FILES = {"warmup": "queries-warmup.bin", "run": "queries-run.bin"}
WATCH_INTERVAL_S = 0.02
"""How often a running attempt is checked against its guard."""

BackendFactory = Callable[[WorkloadConfig, ModelSpec, "int | None"], Backend]


@dataclass(frozen=True)
class LoopStats:
    """A tight loop's figures: calls, samples, wall time and per-call latencies."""

    calls: int
    samples: int
    elapsed_s: float
    latencies_ns: list[int]
    steady_samples_per_s: float = 0.0
    """Throughput over the loop's second half (clock ramp-up and lazy init excluded)."""

    @property
    def samples_per_s(self) -> float:
        """Throughput."""
        return self.samples / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def median_ns(self) -> int:
        """Median call latency."""
        return int(statistics.median(self.latencies_ns)) if self.latencies_ns else 0


@dataclass(frozen=True)
class RunResult:
    """What :meth:`Engine.run` returns (records on this process's monotonic clock)."""

    records: I64
    settings: dict[str, Any]
    failure: str | None
    failures: int
    wall_offset_ns: int
    """``time.time_ns() - time.monotonic_ns()`` right after the run (LoadGen stamps wall time)."""
    attempts: list[Attempt]
    """Every measured attempt, the kept one last (see :mod:`infergy.runners.attempts`)."""
    notes: list[str] = field(default_factory=list)
    """What the SUT says about the run (a network server that went away...)."""
    network: dict[str, Any] | None = None
    """A network SUT's counts (requests, failures, tokens), None in process."""


def tight_loop(
    backends: list[Backend],
    *,
    batch: int,
    workers_per_device: int,
    duration_s: float,
    recorder: QueryRecorder | None = None,
    min_calls: int = 3,
) -> LoopStats:
    """Every worker of every device calls ``infer(batch)`` back to back for ``duration_s``.

    This is the backend's own throughput, with no LoadGen: the reference the harness
    efficiency benchmark compares LoadGen runs against.
    """
    lock = threading.Lock()
    lat: list[int] = []
    ends: list[int] = []
    deadline = time.monotonic_ns() + round(duration_s * 1e9)
    errors: list[BaseException] = []

    def loop(slot: int, worker: int) -> None:
        backend, mine, mine_end, calls = backends[slot], [], [], 0
        try:
            while calls < min_calls or time.monotonic_ns() < deadline:
                t0 = time.monotonic_ns()
                backend.infer(batch, worker)
                t1 = time.monotonic_ns()
                mine.append(t1 - t0)
                mine_end.append(t1)
                calls += 1
                if recorder is not None:
                    recorder.issued(batch)
                    recorder.completed(t0, t1, batch, slot)
        except BaseException as err:
            errors.append(err)
        with lock:
            lat.extend(mine)
            ends.extend(mine_end)

    threads = [
        threading.Thread(target=loop, args=(s, w), name=f"infergy-loop-{s}.{w}", daemon=True)
        for s in range(len(backends))
        for w in range(workers_per_device)
    ]
    t_start = time.monotonic_ns()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_end = time.monotonic_ns()
    elapsed_s = (t_end - t_start) / 1e9
    if errors:
        raise errors[0]
    mid = (t_start + t_end) // 2
    late = sum(1 for t in ends if t > mid)
    steady = late * batch / ((t_end - mid) / 1e9) if late >= 2 else len(lat) * batch / elapsed_s
    return LoopStats(len(lat), len(lat) * batch, elapsed_s, lat, steady)


def versions() -> dict[str, str]:
    """Versions of the always-present pieces (backends add their own)."""
    out = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        out["loadgen"] = importlib.metadata.version("mlcommons-loadgen")
    except importlib.metadata.PackageNotFoundError:
        out["loadgen"] = "unknown"
    return out


class Engine:
    """Backends on every device of ``cfg``, a warmup that calibrates, and LoadGen runs.

    Args:
        cfg: the workload.
        state_dir: where the status board and the phases' record files go (None: in memory).
        backend_factory: builds one backend per device (tests inject their own).
    """

    def __init__(
        self,
        cfg: WorkloadConfig,
        state_dir: Path | None = None,
        backend_factory: BackendFactory = create_backend,
    ) -> None:
        self.cfg = cfg.validate()
        self.state_dir = state_dir
        self._factory = backend_factory
        self.backends: list[Backend] = []
        self.calibration: Calibration | None = None
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
        self.status = StatusBoard(None if state_dir is None else state_dir / "status.bin")
        self.spec: ModelSpec | None = None
        self.current_recorder: QueryRecorder | None = None
        """The phase being recorded (the LoadGen process flushes it when aborted)."""
        self.on_record_error: Callable[[Path, OSError], None] | None = None
        """Called when a phase's record file cannot be written (the LoadGen process ends)."""

    def open(self) -> dict[str, Any]:
        """Load the model on every device; on any failure release what was loaded and raise."""
        cfg = self.cfg
        self.spec = resolve_model(cfg.backend, cfg.model)
        try:
            for gpu in cfg.gpus or (None,):
                backend = self._factory(cfg, self.spec, gpu)
                self.backends.append(backend)
                backend.load()
        except BaseException:
            self.close()
            raise
        return self.describe()

    def describe(self) -> dict[str, Any]:
        """Provenance: versions, model and hash, precision, batch, devices, calibration."""
        per_device = [b.describe() for b in self.backends]
        first = per_device[0] if per_device else {}
        return {
            "backend": self.cfg.backend,
            "model": first.get("model", self.spec.name if self.spec else self.cfg.model),
            "model_sha256": first.get("model_sha256"),
            "precision": self.cfg.precision,
            "batch_size": self.cfg.batch_size,
            "scenario": self.cfg.scenario.value,
            "devices": self.cfg.device_names,
            "workers_per_device": self.cfg.workers_per_device,
            "versions": {**versions(), **first.get("versions", {})},
            "per_device": per_device,
            "calibration": None if self.calibration is None else self.calibration.to_json(),
            "workload": self.cfg.workload,
            **({"llm": first.get("llm"), "lengths": {"input_tokens": self.cfg.input_tokens,
                "output_tokens": self.cfg.output_tokens}} if self.cfg.generative else {}),
        }  # fmt: skip

    def simulate(self, settings_by_device: dict[str, Any]) -> int:
        """Hand simulated boards' settings to the simulated backends (by device name).

        Returns:
            How many backends took settings (0 for a backend that simulates nothing).
        """
        taken = 0
        for backend in self.backends:
            settings = settings_by_device.get(backend.device)
            simulate = getattr(backend, "simulate", None)
            if settings is not None and callable(simulate):
                simulate(settings)
                taken += 1
        return taken

    def _recorder(self, phase: str) -> QueryRecorder:
        path = None if self.state_dir is None else self.state_dir / PHASE_FILES[phase]
        rec = QueryRecorder(self.status, path, self.on_record_error)
        if self.cfg.generative:
            attach_logs(rec, self.state_dir, phase)
        self.current_recorder = rec
        return rec

    def warmup(self, duration_s: float) -> Calibration:
        """Run the scenario's kind of load for ``duration_s`` and measure it."""
        if not self.backends:
            msg = "warmup before the workload was opened"
            raise WorkloadError(msg)
        cfg, rec = self.cfg, self._recorder("warmup")
        ms_batch = min(cfg.batch_size, MULTI_STREAM_SAMPLES_PER_QUERY)
        try:
            if cfg.generative:
                cal = generative_warmup(cfg, self._generators(), duration_s, rec)
            elif cfg.scenario is Scenario.SINGLE_STREAM:
                st = tight_loop(self.backends[:1], batch=1, workers_per_device=1,
                                duration_s=duration_s, recorder=rec, min_calls=20)  # fmt: skip
                m = st.median_ns
                cal = Calibration(st.steady_samples_per_s, m, m, 8 * m)
            elif cfg.scenario is Scenario.MULTI_STREAM:
                st = tight_loop(self.backends[:1], batch=ms_batch, workers_per_device=1,
                                duration_s=duration_s, recorder=rec, min_calls=20)  # fmt: skip
                per_query = st.median_ns * -(-MULTI_STREAM_SAMPLES_PER_QUERY // ms_batch)
                cal = Calibration(st.steady_samples_per_s, st.median_ns, st.median_ns, per_query)
            else:
                cal = self._warmup_pooled(duration_s, rec)
        except InfergyError:
            raise
        except Exception as err:
            msg = f"warmup failed: {type(err).__name__}: {err}"
            raise WorkloadFailedError(msg) from err
        finally:
            rec.close()
        self.calibration = cal
        return cal

    def _generators(self) -> list[GenerativeBackend]:
        gens = [b for b in self.backends if isinstance(b, GenerativeBackend)]
        if len(gens) != len(self.backends):
            msg = "the llm workload's backends are not generative"
            raise WorkloadError(msg)
        return gens

    def _warmup_pooled(self, duration_s: float, rec: QueryRecorder) -> Calibration:
        """Offline/Server warmup: a short tight loop, then a LoadGen Offline calibration run.

        The tight loop alone overestimates what the SUT sustains under LoadGen where the
        per-batch Python work matters (the CPU at batch 1: work pool, records, LoadGen's
        completion path; 34k vs 21.6k samples/s in-process here), and a short loop is noisy
        on a busy 2-core machine: an Offline run sized from it lasted ~2x its duration (or
        ran dry, INVALID). So the rest of the warmup runs the measured run's very path and
        its throughput is the capacity (the loop's figure is kept as ``loop_capacity_sps``).
        """
        cfg = self.cfg
        t0_ns = time.monotonic_ns()
        loadgen_part = duration_s >= MIN_LOADGEN_WARMUP_S / (1 - TIGHT_WARMUP_SHARE)
        st = tight_loop(self.backends, batch=cfg.batch_size,
                        workers_per_device=cfg.concurrency if cfg.network else
                        cfg.workers_per_device,
                        duration_s=TIGHT_WARMUP_SHARE * duration_s if loadgen_part else duration_s,
                        recorder=rec)  # fmt: skip
        loop_sps = st.steady_samples_per_s
        rest_s = duration_s - (time.monotonic_ns() - t0_ns) / 1e9
        if loadgen_part and rest_s >= MIN_LOADGEN_WARMUP_S / 2:
            sps = self._loadgen_capacity(rest_s, loop_sps, rec)
            if sps > 0:
                return Calibration(sps, st.median_ns, st.median_ns, st.median_ns, loop_sps)
        return Calibration(loop_sps, st.median_ns, st.median_ns, st.median_ns)

    def _loadgen_capacity(self, run_s: float, loop_sps: float, rec: QueryRecorder) -> float:
        """Samples/s of a LoadGen Offline run cut off after ``run_s`` (0: nothing completed)."""
        import mlperf_loadgen as lg  # noqa: PLC0415 (optional/heavy library: imported when used)

        settings = calibration_settings(self.cfg, run_s, loop_sps)
        first = len(rec)
        # Its logs are scratch, kept outside the run's folder: a tool that takes the first
        # mlperf_log_detail.txt under it (power-dev) must never find a calibration run's.
        with tempfile.TemporaryDirectory(prefix="infergy-lg-warmup-") as tmp:
            deadline_ns = time.monotonic_ns() + round(run_s * 1e9)
            sut, _ = self._loadgen_test(
                lg, settings, Path(tmp), rec, Scenario.OFFLINE, deadline_ns=deadline_ns
            )
        if sut.failure.first is not None:
            msg = f"warmup failed: {sut.failure.first}"
            raise WorkloadFailedError(msg)
        return steady_capacity(rec.records()[first:], deadline_ns)

    def _loadgen_test(
        self,
        lg: Any,
        settings: dict[str, Any],
        loadgen_dir: Path,
        rec: QueryRecorder,
        scenario: Scenario,
        *,
        deadline_ns: int | None = None,
        watch: Callable[[], str | None] | None = None,
    ) -> tuple[Sut | NetworkSut | GenSut, str | None]:
        """One LoadGen test on our SUT; returns it and why it was cut short (None: it was not).

        From ``deadline_ns`` on, or once ``watch`` (called every :data:`WATCH_INTERVAL_S`)
        returns a reason, pending samples are abandoned.
        """
        loadgen_dir.mkdir(parents=True, exist_ok=True)  # LoadGen aborts at exit without it
        sut, issue_fast = self._sut(lg, rec, scenario)

        stop = threading.Event()
        cut_reason: list[str] = []

        def why_cut() -> str | None:
            if deadline_ns is not None and time.monotonic_ns() >= deadline_ns:
                return "deadline"
            if watch is None or sut.failure.first is not None:
                return None  # a failing SUT is no mis-sized estimate: its failure ends the run
            return watch()

        def cut() -> None:
            while True:
                wait_s = WATCH_INTERVAL_S
                if deadline_ns is not None:
                    wait_s = min(wait_s, max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9))
                if stop.wait(wait_s):
                    return
                reason = why_cut()
                if reason is not None:
                    break
            cut_reason.append(reason)
            sut.abandon()
            while not stop.wait(0.005):  # the query may be issued after the deadline
                sut.abandon()

        cutter = None
        if deadline_ns is not None or watch is not None:
            cutter = threading.Thread(target=cut, name="infergy-warmup-cutoff", daemon=True)
            cutter.start()
        lg_sut = lg.ConstructFastSUT(issue_fast, sut.flush)
        qsl = lg.ConstructQSL(QSL_SAMPLES, QSL_SAMPLES, _noop, _noop)
        out = lg.LogOutputSettings()
        out.outdir = str(loadgen_dir)
        out.copy_summary_to_stdout = False
        log = lg.LogSettings()
        log.log_output = out
        log.enable_trace = False
        try:
            lg.StartTestWithLogSettings(lg_sut, qsl, apply_settings(lg, settings), log)
        finally:
            stop.set()
            if cutter is not None:
                cutter.join()
            sut.close()
            lg.DestroyQSL(qsl)
            lg.DestroyFastSUT(lg_sut)
        return sut, (cut_reason[0] if cut_reason else None)

    def _sut(
        self, lg: Any, rec: QueryRecorder, scenario: Scenario
    ) -> tuple[Sut | NetworkSut | GenSut, Callable[[Sequence[int], Sequence[int]], None]]:
        """The SUT of one LoadGen test and its issue callback (in process, or a server's)."""
        if self.cfg.generative:
            gen = generative_sut(self.cfg, self._generators(), lg, rec)
            return gen, gen.issue
        pooled = scenario in (Scenario.OFFLINE, Scenario.SERVER)
        timeout_ns = round(self.cfg.batching_timeout_ms * 1e6)
        # On a CPU backend a completer thread would take cores from the inference itself
        # (measured: 0.93 -> 0.90 of the tight loop on 2 cores); on a GPU the host is idle.
        on_gpus = all(b.device != "cpu" for b in self.backends)
        sut: Sut | NetworkSut
        issue_fast: Callable[[Sequence[int], Sequence[int]], None]
        if self.cfg.network:  # a running server: the asynchronous SUT (imports aiohttp)
            from infergy.runners.network.backend import NetworkBackend  # noqa: PLC0415

            server = self.backends[0]
            assert isinstance(server, NetworkBackend)
            sut = server.sut(rec, lg, max_batch=self.cfg.batch_size)
            issue_fast = sut.issue
        else:
            sut = Sut(
                self.backends, workers_per_device=self.cfg.workers_per_device, recorder=rec,
                complete=loadgen_complete(lg), pooled=pooled, max_batch=self.cfg.batch_size,
                batching_timeout_ns=timeout_ns if scenario is Scenario.SERVER else 0,
                defer_complete=scenario is Scenario.OFFLINE and on_gpus,
            )  # fmt: skip
            issue = sut.issue

            def issue_ids(ids: Sequence[int], _indices: Sequence[int]) -> None:
                issue(ids)  # Sut.issue never raises

            issue_fast = issue_ids
        return sut, issue_fast

    def _offline_watch(self, guard: OfflineGuard) -> Callable[[], str | None]:
        """The guard fed from the live counters (elapsed from when the query was issued)."""
        values = self.status.values
        issued_ns: list[int] = []

        def watch() -> str | None:
            if not issued_ns:
                if values[QUERIES_ISSUED] < 1:
                    return None
                issued_ns.append(time.monotonic_ns())
            done = int(values[SAMPLES_DONE])
            total = done + int(values[IN_FLIGHT])
            return guard.verdict((time.monotonic_ns() - issued_ns[0]) / 1e9, done, total)

        return watch

    def run(self, loadgen_dir: Path) -> RunResult:
        """One LoadGen test in ``cfg.scenario``; LoadGen's logs go to ``loadgen_dir``."""
        import mlperf_loadgen as lg  # noqa: PLC0415 (optional/heavy library: imported when used)

        if self.calibration is None:
            self.warmup(min(2.0, max(0.3, self.cfg.duration_s / 10)))
        assert self.calibration is not None
        cal, sc, duration_s = self.calibration, self.cfg.scenario, self.cfg.duration_s
        attempts: list[Attempt] = []
        for k in range(1, MAX_ATTEMPTS + 1):
            # A running server is the user's: its load is not re-run, and a stall there is its
            # failure to report, not a mis-sized estimate to cut (the first attempt is kept).
            final = k == MAX_ATTEMPTS or not retryable(sc) or self.cfg.network
            settings = build_settings(self.cfg, cal, use_hint=k == 1)
            share = GENERATIVE_PROJECTION_FROM if self.cfg.generative else PROJECTION_FROM
            guard = (
                OfflineGuard(duration_s, share) if sc is Scenario.OFFLINE and not final else None
            )
            rec = self._recorder("run")
            # Each attempt logs to scratch; only the kept one's logs reach loadgen_dir.
            with tempfile.TemporaryDirectory(prefix="infergy-lg-run-") as tmp:
                try:
                    watch = None if guard is None else self._offline_watch(guard)
                    sut, cut = self._loadgen_test(lg, settings, Path(tmp), rec, sc, watch=watch)
                finally:
                    rec.close()
                records = rec.records()
                attempt = judge(sc, duration_s, records, settings, cut=cut,
                                min_duration_met=_min_duration_met(Path(tmp)))  # fmt: skip
                attempts.append(attempt)
                if attempt.rejected is None or final or sut.failure.first is not None:
                    _keep_logs(Path(tmp), loadgen_dir)
                    break
            cal = corrected(cal, sc, attempt, records, final=k + 1 == MAX_ATTEMPTS)
        net = sut if self.cfg.network and not isinstance(sut, Sut | GenSut) else None
        return RunResult(
            records=records, settings=settings, failure=sut.failure.first,
            failures=sut.failure.count, wall_offset_ns=time.time_ns() - time.monotonic_ns(),
            attempts=attempts,
            notes=[] if net is None else net.notes(), network=None if net is None else net.stats(),
        )  # fmt: skip

    def close(self) -> None:
        """Release every backend (idempotent)."""
        while self.backends:
            self.backends.pop().close()


def _min_duration_met(loadgen_dir: Path) -> bool | None:
    """LoadGen's ``result_min_duration_met`` of the test just logged there (None: unknown)."""
    try:
        met = load_loadgen_detail(loadgen_dir).results.get("result_min_duration_met")
    except InputError:
        return None
    return met if isinstance(met, bool) else None


def _keep_logs(scratch: Path, loadgen_dir: Path) -> None:
    """Move the kept attempt's LoadGen logs from scratch into ``loadgen_dir``."""
    loadgen_dir.mkdir(parents=True, exist_ok=True)
    for f in scratch.iterdir():
        shutil.move(f, loadgen_dir / f.name)


def _noop(_samples: list[int]) -> None:
    """QSL load/unload: the inputs are already in place."""
