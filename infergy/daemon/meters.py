"""The power sources of one session: chosen, opened, sampled, read back and closed together.

:class:`MeterSet` is built from a job's ``meter`` list (or chosen automatically: NVML for each
GPU when present, a configured PTD server, RAPL when readable, otherwise the emulated analyzer)
and owns everything those sources need — including, for the emulated analyzer, an in-process
emulator on a pseudo-terminal behind the real PTD bridge, so the simulated path exercises
the same serial, protocol and client code as a real WT310. Whether a source is simulated is
said by the source itself (:attr:`~infergy.meters.base.SourceInfo.simulated`): the emulated
analyzer's meter is built knowing it, a PTD server whose instrument is simulated says so in
its ``Identify`` reply, simulated GPUs say so through the NVML meter. The result, the live
exports and the screen all read that one flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infergy.config.settings import Settings
from infergy.core.clock import OffsetEstimate, SessionClock
from infergy.core.inputs import SourceInput, pair_samples
from infergy.core.trace import Trace
from infergy.daemon.sim_devices import (
    EMULATED_INTERVAL_MS,
    ActivityMean,
    Emulated,
    open_emulated,
)
from infergy.errors import ConfigError, InfergyError, MeterError
from infergy.meters.base import DEFAULT_CAPACITY, DenseAtEdges, Meter, SourceInfo
from infergy.meters.gpu_sim import SimulatedGpu
from infergy.meters.nvml import NvmlMeter
from infergy.meters.nvml_probe import NvmlMeterConfig
from infergy.meters.ptd import PtdMeter
from infergy.meters.rapl import RaplMeter, probe_rapl
from infergy.meters.sim_board import SimulatedBoard, simulated_part
from infergy.ptd_bridge.emulator import AnalyzerEmulator

PTD_PREFLIGHT_S = 3.0
"""A PTD server named by the job must accept a connection within this long (a refused one is
retried every 0.1 s until then), before anything else runs."""
SIMULATED_BOARDS_DIR = "simulated-gpus"
"""Below the MaxQ state dir: one settings file per modelled simulated board."""
FOLLOW_PERIOD_S = 0.02
"""Simulated devices follow the load's mean activity over this period."""
FIRST_ISSUE_WAIT_S = 30.0
"""Dense counter reads asked for before the measured run last at most this long if its first
query never comes (then the first query asks again)."""
REARM_IDLE_S = 0.5
"""During the measured run, a query after this long with nothing in flight may start the
window again (an Offline attempt re-run): the counter is read densely around it too."""


@dataclass
class MeterSet:
    """The meters of one session and what they need (emulator, NVML library...).

    Use :meth:`open` (blocking parts run off the loop) and ``async with`` for cleanup.
    """

    clock: SessionClock
    meters: list[Meter] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _emulated: Emulated | None = None
    _emulator: AnalyzerEmulator | None = None
    _in_flight_saturation: int = 1
    capacity: int = DEFAULT_CAPACITY
    """Samples kept per source."""
    _sim_gpus: list[SimulatedGpu] = field(default_factory=list)
    boards: list[SimulatedBoard] = field(default_factory=list)
    """The modelled simulated boards (``[meters] simulated_part``), in GPU order."""
    _activity: ActivityMean = field(default_factory=ActivityMean)
    _follower: threading.Thread | None = None
    _follow_stop: threading.Event = field(default_factory=threading.Event)
    _reported_activity: bool = False  # the workload reports its own (simulated generative)
    _edge_armed: bool = False  # the next query issued may start the window
    _measuring: bool = False
    _idle_since_s: float | None = None

    # -- construction --------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        requested: Sequence[str],
        settings: Settings,
        clock: SessionClock,
        *,
        gpus: Sequence[int] | None = None,
        env: Mapping[str, str] | None = None,
        capacity: int = DEFAULT_CAPACITY,
        simulate_missing: bool = True,
    ) -> MeterSet:
        """Open the requested meters, or choose them (``requested`` empty).

        Args:
            requested: ``nvml``, ``rapl``, ``sim``, ``ptd://HOST:PORT``; empty: automatic.
            settings: the configuration (``[meters]``).
            clock: the session clock the samples are stamped with.
            gpus: GPU indices to meter (None: every visible one).
            env: the environment (``CUDA_VISIBLE_DEVICES``).
            capacity: samples kept per source.
            simulate_missing: chosen automatically without a wall or CPU reference, add the
                emulated analyzer (SIMULATED); False (``infergy watch``): never, and no meter
                at all is an error saying why.

        Raises:
            MeterError: an explicitly requested meter cannot be opened (with the reason), or
                none could be chosen and ``simulate_missing`` is False.
        """
        self = cls(clock)
        self.capacity = capacity
        auto = not requested
        try:
            wanted = list(requested) or _automatic(settings)
            for item in wanted:
                try:
                    await self._open_one(item, settings, gpus, env)
                except InfergyError as err:
                    if not auto or item == "sim" or item.startswith("ptd://"):
                        raise  # a configured analyzer that cannot be reached is an error
                    self.notes.append(f"{item}: not used: {err}")
            if auto and not any(m.name in ("ptd", "rapl") for m in self.meters):
                if simulate_missing:
                    # No wall or CPU reference: the emulated analyzer stands in as "ac", labelled.
                    await self._open_emulated(settings, source="ac")
                elif not self.meters:
                    raise MeterError(_nothing_here(settings, self.notes), hint=_NOTHING_HINT)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def _open_one(
        self,
        item: str,
        settings: Settings,
        gpus: Sequence[int] | None,
        env: Mapping[str, str] | None,
    ) -> None:
        if item == "nvml" and settings.meters.simulated_gpus:
            self.meters.append(await asyncio.to_thread(self._simulated_gpus, settings, env))
        elif item == "nvml":
            self.meters.append(await asyncio.to_thread(self._nvml, settings, gpus, env))
        elif item == "rapl":
            rapl = await asyncio.to_thread(RaplMeter, clock=self.clock, capacity=self.capacity)
            self.meters.append(rapl)
        elif item == "sim":
            await self._open_emulated(settings, source="sim")
        elif item.startswith("ptd://"):
            host, _, port = item.removeprefix("ptd://").rpartition(":")
            meter = PtdMeter(
                clock=self.clock, host=host.strip("[]"), port=int(port),
                interval_ms=settings.meters.ptd_interval_ms, autostart=True,
                connect_timeout_s=10.0, capacity=self.capacity,
            )  # fmt: skip
            await meter.check_reachable(PTD_PREFLIGHT_S)
            self.meters.append(meter)
        else:
            msg = f"unknown meter {item!r}"
            raise ConfigError(msg, hint="use nvml, rapl, sim or ptd://HOST:PORT")

    @staticmethod
    def _nvml_config(settings: Settings) -> NvmlMeterConfig:
        nv = settings.meters.nvml
        return NvmlMeterConfig(
            counter_poll_factor=nv.counter_poll_factor,
            counter_sparse_interval_s=nv.counter_sparse_interval_s,
            counter_dense_span_s=nv.counter_dense_span_s,
            samples_read_interval_s=nv.samples_read_interval_s,
            context_interval_s=nv.context_interval_s,
        )

    def _nvml(
        self, settings: Settings, gpus: Sequence[int] | None, env: Mapping[str, str] | None
    ) -> NvmlMeter:
        config = self._nvml_config(settings)
        environ = dict(os.environ if env is None else env)
        if gpus is not None and "CUDA_VISIBLE_DEVICES" not in environ:
            environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
        meter = NvmlMeter.open(clock=self.clock, config=config, env=environ, capacity=self.capacity)
        self.notes.extend(f"nvml: {n}" for n in meter.notes)
        return meter

    def _simulated_gpus(self, settings: Settings, env: Mapping[str, str] | None) -> NvmlMeter:
        """The real NVML meter over simulated boards (``[meters] simulated_gpus``).

        A modelled part (``[meters] simulated_part``) gets one :class:`SimulatedBoard` per GPU,
        its settings kept in the MaxQ state dir as a real board keeps them across processes.
        """
        count, part = settings.meters.simulated_gpus, settings.meters.simulated_part
        if part != "generic":
            state_dir = settings.maxq_state_dir(os.environ if env is None else env)
            model = simulated_part(part)
            self.boards = [
                SimulatedBoard(model, i, state_dir=state_dir / SIMULATED_BOARDS_DIR)
                for i in range(count)
            ]
            self._sim_gpus = [SimulatedGpu(i, board=b) for i, b in enumerate(self.boards)]
        else:
            self._sim_gpus = [SimulatedGpu(i) for i in range(count)]
        self._start_follower()
        meter = NvmlMeter(
            self._sim_gpus,
            clock=self.clock,
            config=self._nvml_config(settings),
            capacity=self.capacity,
        )
        what = f"{self.boards[0].part.name} model" if self.boards else "generic"
        self.notes.append(
            f"nvml: {len(self._sim_gpus)} SIMULATED GPUs ({what}, [meters] simulated_gpus): "
            "their power follows the load; not a measurement"
        )
        return meter

    async def _open_emulated(self, settings: Settings, *, source: str) -> None:
        """The emulated analyzer as ``source``: ``sim`` when asked for, ``ac`` standing in."""
        if self._emulated is not None:
            msg = "the emulated analyzer is already open (one per session)"
            raise ConfigError(msg, hint="give --meter sim once")
        emulated = await open_emulated(settings, self.clock)
        self._emulator = emulated.emulator
        self._emulated = emulated
        self._start_follower()
        meter = PtdMeter(
            clock=self.clock, port=emulated.bridge.port, source=source,
            interval_ms=EMULATED_INTERVAL_MS, mark="infergy-sim", connect_timeout_s=10.0,
            capacity=self.capacity, simulated=True,
        )  # fmt: skip
        self.meters.append(meter)
        what = "a scripted power profile" if emulated.scripted else "the workload's activity"
        model = settings.meters.emulator.model.upper()
        why = "--meter sim" if source == "sim" else "no analyzer is configured"
        self.notes.append(
            f"{meter.source}: SIMULATED wall power: an emulated {model} following {what} "
            f"({why}); not a measurement"
        )

    # -- while running -------------------------------------------------------------------------

    def set_saturation(self, samples_in_flight: int) -> None:
        """How many samples in flight make the simulated device fully busy."""
        self._in_flight_saturation = max(1, samples_in_flight)

    def set_simulated_load(self, batch_size: int, precision: str, workload: str = "vision") -> None:
        """The load modelled boards run when busy (their busy power is the model's for it).

        A session's start: until the workload reports its own activity (:meth:`on_activity`),
        the simulated devices follow the samples in flight.
        """
        self._reported_activity = False
        for board in self.boards:
            board.set_load(batch_size, precision, workload)

    def on_activity(self, fraction: float) -> None:
        """The workload's own activity (a simulated generative step's power, 0-1).

        Followed instead of the samples in flight for the rest of the session.
        """
        self._reported_activity = True
        self._activity.set(min(1.0, max(0.0, fraction)))

    def simulated_settings(self) -> dict[str, dict[str, Any]]:
        """Each modelled board's settings by device name (``gpu0``...), for ``--backend sim``."""
        return {f"gpu{i}": board.settings.to_json() for i, board in enumerate(self.boards)}

    def on_in_flight(self, samples: int) -> None:
        """Follow the load (called from runner threads, up to ~10^5 times a second): cheap.

        The simulated devices see the exact time-average of this over each
        :data:`FOLLOW_PERIOD_S` (:meth:`_follow`), so energy is conserved however fast it flips.
        """
        if not self._reported_activity:
            self._activity.set(min(1.0, samples / self._in_flight_saturation))
        if not self._measuring:
            return
        if samples <= 0:
            if self._idle_since_s is None:
                self._idle_since_s = time.monotonic()
            return
        idle_since, self._idle_since_s = self._idle_since_s, None
        rearm = idle_since is not None and time.monotonic() - idle_since >= REARM_IDLE_S
        if self._edge_armed or rearm:
            self._edge_armed = False
            self.dense_counter(None)  # from the first query on: the span

    def window_start_near(self) -> None:
        """The measured run starts now: read energy counters densely until its first query.

        From that query on, the dense span still runs, so the window's start sits among dense
        reads. Every GPU of the meters is asked (a session's CUDA ordinals need not be the
        meter's source numbers, and a dense span on another GPU costs only a little CPU).
        """
        self._edge_armed, self._measuring, self._idle_since_s = True, True, None
        self.dense_counter(FIRST_ISSUE_WAIT_S)

    def window_end_near(self) -> None:
        """The measured run ended: read energy counters densely for the span (in the tail)."""
        self._measuring = self._edge_armed = False
        self.dense_counter(None)

    def dense_counter(self, for_s: float | None, gpus: Sequence[str] | None = None) -> None:
        """Ask the meters that read a reference sparsely to read it densely for ``for_s``.

        None: each meter's configured span. Other meters are not concerned.
        """
        for meter in self.meters:
            if isinstance(meter, DenseAtEdges):
                with contextlib.suppress(InfergyError):  # a GPU that is not this meter's
                    meter.dense_counter(for_s, gpus)

    def _follow(self) -> None:
        """Thread: every FOLLOW_PERIOD_S, hand the mean activity to the simulated devices."""
        last = 0.0
        while not self._follow_stop.wait(FOLLOW_PERIOD_S):
            activity = self._activity.take_mean()
            if activity == last:
                continue  # idle stays idle: no knots, no history
            last = activity
            for gpu in self._sim_gpus:
                gpu.set_activity(activity)
            emu = self._emulated
            if emu is not None and not emu.scripted:
                emu.emulator.set_watts(emu.idle_w + (emu.busy_w - emu.idle_w) * activity)

    def _start_follower(self) -> None:
        if self._follower is None:
            self._follower = threading.Thread(target=self._follow, name="sim-follow", daemon=True)
            self._follower.start()

    @property
    def emulator(self) -> AnalyzerEmulator | None:
        """The in-process emulated analyzer, if one was used (tests inject faults through it)."""
        return self._emulator

    def ptd_meters(self) -> list[PtdMeter]:
        """The analyzer meters (ranging/testing passes apply to them)."""
        return [m for m in self.meters if isinstance(m, PtdMeter)]

    def ranging_meters(self) -> list[PtdMeter]:
        """The analyzers MLPerf's ranging pass applies to: all but the in-process stand-in.

        A PTD server elsewhere that says its instrument is simulated is ranged like a real
        one (a rehearsal of the real procedure); the stand-in has nothing to range for.
        """
        emu = self._emulated
        port = emu.bridge.port if emu is not None else None
        return [m for m in self.ptd_meters() if not (m.host == "127.0.0.1" and m.port == port)]

    def nvml(self) -> NvmlMeter | None:
        """The NVML meter, if any."""
        return next((m for m in self.meters if isinstance(m, NvmlMeter)), None)

    def sources(self) -> list[tuple[Meter, SourceInfo]]:
        """Every source of every meter."""
        return [(m, info) for m in self.meters for info in m.describe()]

    @property
    def simulated(self) -> frozenset[str]:
        """The sources whose readings are not measurements (see :meth:`simulated_sources`)."""
        return self.simulated_sources()

    def simulated_sources(self) -> frozenset[str]:
        """The sources whose readings are not measurements (as they describe themselves)."""
        return frozenset(info.name for _, info in self.sources() if info.simulated)

    async def wait_ready(self, timeout_s: float = 15.0) -> None:
        """Wait until network meters are connected."""
        for meter in self.ptd_meters():
            await meter.wait_connected(timeout_s)

    def latest_watts(self, window_s: float = 1.5) -> dict[str, float]:
        """Recent power per headline source, for progress displays (not for results)."""
        now = self.clock.now_ns()
        out: dict[str, float] = {}
        for meter, info in self.sources():
            with contextlib.suppress(InfergyError):
                trace = meter.snapshot(info.name, now - round(window_s * 1e9), now)
                watts = _recent_watts(trace)
                if watts is not None:
                    out[info.name] = watts
        return out

    # -- reading back --------------------------------------------------------------------------

    def source_inputs(self, start_ns: int | None = None) -> list[SourceInput]:
        """Every source's trace so far (from ``start_ns`` if given), ready for the analysis.

        An energy counter ``gpu<i>`` carries its ``gpu<i>.samples`` for anchoring.
        """
        inputs = []
        for meter, info in self.sources():
            trace = meter.snapshot(info.name, start_ns)
            if len(trace) == 0:
                self.notes.append(f"{info.name}: no sample was recorded")
                continue
            offset: OffsetEstimate | None = None
            if isinstance(meter, PtdMeter) and meter.clock_offset.accepted:
                # snapshot() already applied it; keep the estimate for the result only.
                est = meter.clock_offset
                offset = OffsetEstimate(0, est.uncertainty_ns, est.method, True, reason=est.reason)
            if isinstance(meter, PtdMeter) and meter.simulated:
                self._note_simulated_ptd(meter, info.name)
            inputs.append(
                SourceInput(
                    name=info.name,
                    kind=info.kind,
                    trace=trace,
                    offset=offset,
                    update_period_ns=info.nominal_period_ns,
                    simulated=info.simulated,
                )
            )
        return pair_samples(inputs)

    def _note_simulated_ptd(self, meter: PtdMeter, name: str) -> None:
        """Say once why an analyzer source is simulated (its server told us, if not we)."""
        if any(
            n.startswith((f"{name}: SIMULATED", f"{meter.source}: SIMULATED")) for n in self.notes
        ):
            return
        idn = meter.identity.idn if meter.identity is not None else "?"
        self.notes.append(
            f"{name}: SIMULATED: the PTD server at {meter.host}:{meter.port} says its analyzer "
            f"is simulated ({idn}); not a measurement"
        )

    def describe(self) -> dict[str, Any]:
        """Provenance of the sources: devices, semantics, simulated flags, clock offsets."""
        out: dict[str, Any] = {}
        for meter, info in self.sources():
            entry: dict[str, Any] = {
                "meter": meter.name,
                "kind": info.kind,
                "device": info.device,
                "semantics": info.semantics.value,
                "nominal_period_ms": info.nominal_period_ns / 1e6,
                "simulated": info.simulated,
            }
            if isinstance(meter, PtdMeter):
                off = meter.clock_offset
                entry["clock_offset_ms"] = off.offset_ms if off.accepted else None
                entry["clock_offset_uncertainty_ms"] = off.uncertainty_ns / 1e6
                entry["ranges"] = meter.testing_ranges
            out[info.name] = entry
        return out

    def health_problems(self) -> list[str]:
        """Sources that are down or counted errors, as result problems."""
        problems = []
        for meter in self.meters:
            for source, h in meter.health().items():
                if h.errors:
                    kinds = ", ".join(f"{k} x{n}" for k, n in sorted(h.errors.items()))
                    problems.append(f"{source}: errors while sampling: {kinds}")
                if h.dropped:
                    problems.append(f"{source}: {h.dropped} samples dropped (ring buffer full)")
        return problems

    # -- shutdown ------------------------------------------------------------------------------

    async def stop_analyzers(self, timeout_s: float = 10.0) -> None:
        """End the analyzers' measurement and restore their ranges (best effort, bounded).

        A meter that is not connected (its task has ended, or it is reconnecting) is skipped:
        waiting for it would only spend the bound.
        """
        for meter in self.ptd_meters():
            if not meter.connected:
                continue
            try:
                async with asyncio.timeout(timeout_s):
                    await meter.stop()
            except (InfergyError, TimeoutError, OSError) as err:
                why = str(err) or type(err).__name__  # a TimeoutError has no message
                self.notes.append(f"{meter.source}: could not stop the analyzer cleanly: {why}")

    async def aclose(self) -> None:
        """Close every meter and the emulator (idempotent)."""
        self._follow_stop.set()
        if self._follower is not None:
            await asyncio.to_thread(self._follower.join, 5)
        for meter in self.meters:
            if isinstance(meter, NvmlMeter):
                with contextlib.suppress(InfergyError):
                    await asyncio.to_thread(meter.close)
        emu, self._emulated = self._emulated, None
        if emu is not None:
            with contextlib.suppress(InfergyError, OSError):
                await emu.bridge.__aexit__(None, None, None)
            emu.emulator.stop()
            emu.console.close()
            emu.tmp.cleanup()

    async def __aenter__(self) -> MeterSet:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _automatic(settings: Settings) -> list[str]:
    """The default meters: NVML when a GPU is there, the configured analyzer, RAPL."""
    wanted = ["nvml"]
    if settings.meters.ptd is not None:
        wanted.append(f"ptd://{settings.meters.ptd}")
    if settings.meters.rapl and probe_rapl().usable:
        wanted.append("rapl")
    return wanted


_NOTHING_HINT = (
    "--meter sim shows a SIMULATED analyzer; --from http://HOST:8765 watches a running "
    '`infergy serve`; a wall analyzer is [meters] ptd = "HOST:PORT"'
)


def _nothing_here(settings: Settings, notes: Sequence[str]) -> str:
    """Why no meter could be chosen: each candidate's reason, in one line."""
    why = [n.replace(": not used: ", ": ") for n in notes if ": not used: " in n]
    if not settings.meters.rapl:
        why.append("rapl: disabled ([meters] rapl = false)")
    elif not any(w.startswith("rapl") for w in why):
        why.append(f"rapl: {probe_rapl().reason or 'not usable'}")
    if settings.meters.ptd is None:
        why.append("no analyzer configured ([meters] ptd)")
    return "no power meter is available here: " + "; ".join(why)


def _recent_watts(trace: Trace) -> float | None:
    """Mean power of a short trace (counter: energy delta over time)."""
    ok = np.isfinite(trace.values)
    t, v = trace.t_ns[ok], trace.values[ok]
    if t.size == 0:
        return None
    if trace.semantics.value == "counter":
        if t.size < 2 or t[-1] == t[0]:
            return None
        return float((v[-1] - v[0]) / ((t[-1] - t[0]) / 1e9))
    return float(v.mean())
