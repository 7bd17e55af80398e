"""``infergy serve``: the long-running service, and its composition root.

One asyncio TaskGroup holds everything: the meters (sampling all the time, so idle power is
visible between runs), the live telemetry behind ``/metrics``, the job scheduler (sessions one
at a time per GPU set), the HTTP control API, the MQTT publisher and the systemd watchdog.

Startup: check that the store's and the results' folders are writable (else stop, with one
line), open the store, take back every job a previous lifetime accepted
(:mod:`infergy.daemon.recovery`: queued jobs queue again, interrupted runs are rebuilt from
what is on disk and stored ``aborted``, so are sweeps whose process is gone), open the meters,
restore the GPU settings a killed MaxQ sweep left changed (its journal), start everything, then
``READY=1``. Jobs are measurement sessions (``POST /v1/runs``, ``cmd/run``) or MaxQ sweeps
(``POST /v1/maxq``, ``cmd/maxq``), one queue for both, every one journalled in the store before
it is accepted; a sweep's record is published on ``maxq``. A missing optional part (no GPU, no
analyzer, the broker down) degrades the service, never stops it.

SIGTERM/SIGINT (each step bounded, and logged with its reason): refuse new jobs, keep queued
ones for the next start, let the running one finish within ``[serve] stop_timeout_s`` or abort
it (as long again to keep what it measured, the reason in its result), write the journal,
stop the analyzers' measurement, deliver the MQTT outbox (``STOP_FLUSH_S``), ``STOPPING=1``.
An idle service exits in well under 2 s. SIGHUP: reload the config for future sessions
(analysis thresholds, output, session phases); parts that would need a restart (listen
address, meters, broker) are named in the log and left as they are.

A result the store refuses (a full disk) is kept in memory, served by the API, and stored
(and published) as soon as the store takes it again; ``/healthz`` measures the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from infergy import __version__
from infergy.config.settings import Settings, load_settings
from infergy.core.clock import SessionClock
from infergy.daemon.auto_batch import resolve_auto_batch
from infergy.daemon.disk import check_writable
from infergy.daemon.http_api import build_app, serve_http
from infergy.daemon.http_models import ComponentHealth, HealthState
from infergy.daemon.jobs import JobSpec
from infergy.daemon.journal import JobJournal
from infergy.daemon.maxq_controls import abort_dead_sweeps, describe_restore, restore_left_journal
from infergy.daemon.maxq_session import MaxqSweep, QuietSweepObserver
from infergy.daemon.maxq_spec import MaxqSpec
from infergy.daemon.meters import MeterSet
from infergy.daemon.mqtt_commands import CommandHandler
from infergy.daemon.node_status import NodeStatus
from infergy.daemon.notify import Notifier
from infergy.daemon.recovery import INTERRUPTED, Recovery, recover
from infergy.daemon.scheduler import Job, JobScheduler
from infergy.daemon.service_store import StoreKeeper
from infergy.daemon.session import Session, SessionOutcome
from infergy.daemon.session_keep import LoggingObserver
from infergy.daemon.session_types import unwrapped
from infergy.errors import ConfigError, InfergyError, JobError
from infergy.exporters.outbox import Outbox
from infergy.exporters.prometheus import build_registry, render_metrics
from infergy.exporters.telemetry import LiveTelemetry
from infergy.store.db import Store
from infergy.store.integrity import swap_in

logger = logging.getLogger(__name__)
SERVICE_CAPACITY = 1 << 18
"""Samples kept per source by the service: 87 min at 50 Hz (a session longer than that loses
its oldest samples, and its coverage says so); 4 MiB per source, committed at startup."""
PTD_RESTART_S = 3600.0
"""Between sessions, the analyzer's measurement is restarted this often (bounded PTD state)."""
CHECKPOINT_S = 10.0
"""How often a running session's data is checkpointed into the store."""
STOP_FLUSH_S = 10.0
"""At a stop, how long the MQTT outbox may take to reach the broker (the rest waits on disk)."""
STOP_ANALYZERS_S = 5.0
"""At a stop, how long ending the analyzers' measurement may take."""
STOP_JOURNAL_S = 5.0
"""At a stop, how long writing the job journal, and offering unstored results, may each take."""
STOP_ABORT_MIN_S = 5.0
"""At a stop, the least an aborted session gets to write, analyse and store what it measured
(seconds on a loaded host): a short ``stop_timeout_s`` does not shorten this part below it."""


def stop_bound_s(stop_timeout_s: float) -> float:
    """The longest a graceful stop can take (systemd's ``TimeoutStopSec=`` must exceed it).

    The running job's ``stop_timeout_s``, as long again to abort and keep it, the journal and
    the kept results, the analyzers' measurement, the MQTT outbox.
    """
    return 2 * stop_timeout_s + 2 * STOP_JOURNAL_S + STOP_ANALYZERS_S + STOP_FLUSH_S


_RESTART_ONLY = ("serve", "meters", "mqtt", "store", "node_name")
"""Config sections SIGHUP cannot apply to a running service."""


class _StopError(Exception):
    """Raised inside the TaskGroup to end the service after a graceful stop."""


class Service:
    """The service: ``await Service(settings).run()`` until SIGTERM.

    Args:
        settings: the configuration.
        config_path: the TOML file, re-read on SIGHUP (``None``: nothing to reload).
        env: the environment (GPU selection, systemd's NOTIFY_SOCKET and STATE_DIRECTORY).
        overrides: what the command line set over the file (``--listen``, ``--state-dir``):
            a reload applies them again, so it resolves everything exactly as the start did.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.config_path = config_path
        self.env = dict(os.environ if env is None else env)
        self.overrides = dict(overrides or {})
        self.settings = _rooted(settings, self.env)
        self.notifier = Notifier.from_env(self.env)
        self.stop_requested = asyncio.Event()
        self.ready = asyncio.Event()
        self.store: Store | None = None
        self.meter_set: MeterSet | None = None
        self.telemetry: LiveTelemetry | None = None
        self.scheduler: JobScheduler | None = None
        self.outbox: Outbox | None = None
        self.journal: JobJournal | None = None
        self.keeper: StoreKeeper | None = None
        self.mqtt: Any = None
        self.node_status: NodeStatus | None = None
        self.port: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until a stop is requested (SIGTERM, SIGINT or :meth:`request_stop`).

        Raises:
            InfergyError: a required part cannot start (the store, the HTTP listener).
        """
        s = self.settings
        path = s.store.path_or_default(self.env)
        await asyncio.to_thread(check_writable, path.parent, "the store's folder")
        await asyncio.to_thread(check_writable, s.output.dir, "the results folder ([output] dir)")
        self.store = store = await asyncio.to_thread(Store.open, path)
        try:
            self.keeper = StoreKeeper(store)
            rebuilt = await asyncio.to_thread(self.keeper.check_integrity)
            if rebuilt is not None:  # damaged indexes: the copy rebuilt from the tables goes in
                await asyncio.to_thread(store.close)
                backup = await asyncio.to_thread(swap_in, path, rebuilt)
                self.store = store = await asyncio.to_thread(Store.open, path)
                self.keeper.rebuilt(store, backup)
            recovery = await asyncio.to_thread(recover, store, s, now_ns=time.time_ns())
            interrupted = await asyncio.to_thread(
                store.mark_interrupted, f"{INTERRUPTED}; the data kept is its last checkpoint"
            )  # runs left `running` without a journal entry (an older infergy's)
            for run_id in interrupted:
                logger.warning("run %s was interrupted by a previous stop: marked aborted", run_id)
            for sweep_id in await asyncio.to_thread(
                abort_dead_sweeps, store, "the process running this sweep stopped (killed or "
                "crashed); its points so far are kept",
            ):  # fmt: skip
                logger.warning("sweep %s was interrupted: marked aborted", sweep_id)
            await self._serve(store, recovery, interrupted)
        finally:
            await asyncio.to_thread(store.close)

    async def _serve(self, store: Store, recovery: Recovery, interrupted: list[str]) -> None:
        s = self.settings
        token = s.serve.api_token()
        clock = SessionClock()
        self.journal = JobJournal(store, clock_offset_ns=clock.wall0_ns - clock.mono0_ns)
        self.meter_set = meters = await MeterSet.open(
            (), s, clock, env=self.env, capacity=SERVICE_CAPACITY
        )
        try:
            await self._restore_gpus(meters)
            nvml = meters.nvml()
            if nvml is not None:
                nvml.set_counter_poll_factor(s.meters.nvml.idle_counter_poll_factor)
            self.telemetry = telemetry = LiveTelemetry(
                meters.meters, clock=clock, simulated=meters.simulated
            )
            await asyncio.to_thread(restore_last_sessions, store, telemetry)
            for record in await asyncio.to_thread(store.list_sweeps, 1):
                telemetry.restore_last_sweep(record)
            registry = build_registry(telemetry)
            self.outbox = Outbox(store, max_entries=s.mqtt.outbox_max_entries)
            assert self.keeper is not None
            self.keeper.outbox = self.outbox if s.mqtt.enabled else None
            self.scheduler = scheduler = JobScheduler(
                self._run_session,
                max_queued=s.serve.max_queued_jobs,
                on_change=self._job_changed,
                persist=self.journal.add,
                check=self._check_runnable,
            )
            for job in [*recovery.finished, *recovery.queued]:
                scheduler.restore(job)
            if s.mqtt.enabled:
                from infergy.exporters.mqtt import MqttPublisher  # noqa: PLC0415

                # the interrupted runs' final (aborted) results go out like any other
                found = [await asyncio.to_thread(store.find_result, i) for i in interrupted]
                for result in [*recovery.results, *(r for r in found if r is not None)]:
                    await asyncio.to_thread(self.outbox.put_result, result)

                self.node_status = NodeStatus(
                    s, meter_set=meters, telemetry=telemetry.telemetry, scheduler=scheduler
                )
                self.mqtt = MqttPublisher(
                    s.mqtt,
                    node=s.node_name,
                    outbox=self.outbox,
                    latest_power=self._latest_power,
                    simulated=self._simulated_sources,
                    status=self.node_status,
                    commands=CommandHandler(
                        self._submit,
                        self._cancel,
                        timeout_s=s.mqtt.timeout_s,
                        submit_sweep=self._submit,
                    ),
                )
            app = build_app(
                scheduler,
                token=token,
                max_body_bytes=s.serve.max_body_bytes,
                health=self.health_details,
                metrics=lambda: render_metrics(registry),
                result_lookup=self._lookup,
                sweep_lookup=self._lookup_sweep,
            )
            listening = asyncio.Event()
            with self._signals():
                async with (
                    unwrapped(ignore=(_StopError, asyncio.CancelledError)),
                    asyncio.TaskGroup() as tg,
                ):
                    for m in meters.meters:
                        tg.create_task(m.run(), name=f"meter[{m.name}]")
                    tg.create_task(telemetry.run(), name="telemetry")
                    tg.create_task(scheduler.run(), name="scheduler")
                    tg.create_task(
                        serve_http(
                            app, s.serve.host, s.serve.port,
                            token_set=token is not None, listening=listening,
                        ),
                        name="http",
                    )  # fmt: skip
                    tg.create_task(self.notifier.watchdog(), name="watchdog")
                    if self.mqtt is not None:
                        tg.create_task(self.mqtt.run(), name="mqtt")
                    tg.create_task(self._lifecycle(listening), name="lifecycle")
                    tg.create_task(self._restart_analyzers(), name="ptd-restarts")
                    tg.create_task(self.journal.run(), name="job-journal")
                    tg.create_task(self.keeper.run(), name="store-keeper")
        finally:
            await meters.stop_analyzers(STOP_ANALYZERS_S)  # unless done already (connected)
            await meters.aclose()
            logger.info("infergy stopped")

    async def _lifecycle(self, listening: asyncio.Event) -> None:
        """Ready when listening; on a stop request drain, flush, and end the TaskGroup."""
        async with asyncio.timeout(30):
            await listening.wait()
        for _ in range(100):  # up to 10 s for the meters' first samples, so READY tells the truth
            if self.health().get("meters") != "down" or self.stop_requested.is_set():
                break
            await asyncio.sleep(0.1)
        parts = ", ".join(f"{k} {_state(v)}" for k, v in sorted(self.health().items()))
        self.notifier.ready(f"serving on {self.settings.serve.listen}: {parts}")
        logger.info("infergy %s ready on %s (%s)", __version__, self.settings.serve.listen, parts)
        self.ready.set()
        await self.stop_requested.wait()
        await self._stop()
        raise _StopError

    async def _stop(self) -> None:
        """The graceful stop: every step bounded, and logged with why it waits."""
        assert self.scheduler is not None and self.journal is not None
        assert self.keeper is not None and self.meter_set is not None
        t0 = time.monotonic()
        self.notifier.stopping("stopping: finishing the current job")
        timeout_s = self.settings.serve.stop_timeout_s
        await self.scheduler.drain(timeout_s, abort_timeout_s=max(timeout_s, STOP_ABORT_MIN_S))
        if not await self.journal.flush(STOP_JOURNAL_S):
            logger.error("stopping: the job journal could not be written within %g s: %s",
                         STOP_JOURNAL_S, self.journal.last_error)  # fmt: skip
        await self.keeper.last_try(STOP_JOURNAL_S)
        await self.meter_set.stop_analyzers(STOP_ANALYZERS_S)  # while the meters still run
        if self.mqtt is not None and self.outbox is not None:
            pending = await asyncio.to_thread(self.outbox.pending)
            if pending:
                self.notifier.status("stopping: delivering the MQTT outbox")
                logger.info("stopping: delivering %d queued MQTT message(s) (up to %g s)",
                            pending, STOP_FLUSH_S)  # fmt: skip
            if not await self.mqtt.flush(STOP_FLUSH_S):
                left = await asyncio.to_thread(self.outbox.pending)
                logger.warning("stopping: %d MQTT message(s) not delivered within %g s (the broker "
                               "is unreachable): they stay in the outbox for the next start",
                               left, STOP_FLUSH_S)  # fmt: skip
        logger.info("stopping: done in %.1f s", time.monotonic() - t0)

    async def _restart_analyzers(self) -> None:
        """Every PTD_RESTART_S while idle: a new PTD measurement (the server frees the old)."""
        assert self.meter_set is not None and self.scheduler is not None
        while True:
            await asyncio.sleep(PTD_RESTART_S)
            if self.scheduler.counts().get("running"):
                continue
            for meter in self.meter_set.ptd_meters():
                try:
                    async with asyncio.timeout(30):
                        await meter.restart_measurement()
                except (InfergyError, TimeoutError) as err:
                    logger.warning("%s: could not restart the measurement: %s", meter.source, err)

    def request_stop(self, why: str = "a stop was requested") -> None:
        """Stop gracefully (what SIGTERM does); says so in the log, once."""
        if not self.stop_requested.is_set():
            running = self.scheduler.counts().get("running", 0) if self.scheduler else 0
            logger.info(
                "infergy stopping (%s): no new jobs; %s",
                why,
                f"{running} running job(s) get {self.settings.serve.stop_timeout_s:g} s "
                "([serve] stop_timeout_s) to finish, then are aborted"
                if running
                else "no job is running",
            )
        self.stop_requested.set()

    @contextlib.contextmanager
    def _signals(self) -> Any:
        loop = asyncio.get_running_loop()
        handlers: dict[signal.Signals, Callable[[], None]] = {
            signal.SIGTERM: functools.partial(self.request_stop, "SIGTERM"),
            signal.SIGINT: functools.partial(self.request_stop, "SIGINT"),
            signal.SIGHUP: self.reload,
        }
        installed = []
        for sig, handler in handlers.items():
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, handler)
                installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def reload(self) -> None:
        """SIGHUP: re-read the config; apply what future sessions use, name what needs a restart."""
        self.notifier.reloading("reloading the configuration")
        try:
            new = load_settings(self.config_path, self.env, overrides=self.overrides or None)
            new = _rooted(new, self.env)  # paths resolved as at start, never against the cwd
        except ConfigError as err:
            logger.error("reload refused, keeping the running config: %s", err)
            self.notifier.ready("reload refused (bad config); running as before")
            return
        old = self.settings.dump_masked()
        changed = [k for k, v in new.dump_masked().items() if old.get(k) != v]
        needs_restart = [k for k in changed if k in _RESTART_ONLY]
        self.settings = new
        logger.info(
            "config reloaded: %s changed%s",
            ", ".join(changed) or "nothing",
            f"; {', '.join(needs_restart)} apply after a restart" if needs_restart else "",
        )
        self.notifier.ready("configuration reloaded")

    # -- collaborators -------------------------------------------------------------------------

    async def _restore_gpus(self, meters: MeterSet) -> None:
        """At start: put back what a killed sweep left changed (its journal), and say so."""
        state_dir = self.settings.maxq_state_dir(self.env)
        try:
            report = await asyncio.to_thread(restore_left_journal, state_dir, meters.boards)
        except InfergyError as err:  # keep serving: the journal stays for a later restore
            logger.error("GPU settings left by a killed sweep NOT restored: %s", err)
            return
        if report is not None:
            logger.warning("%s (verified)", describe_restore(report))

    async def _run_sweep(self, sweep_id: str, spec: MaxqSpec) -> dict[str, Any]:
        """A MaxQ sweep on the service's meters; its record is published when done."""
        assert self.meter_set is not None and self.telemetry is not None
        sweep = MaxqSweep(
            sweep_id, spec, self.settings, store=self.store, observer=QuietSweepObserver(),
            shared_meters=self.meter_set, env=self.env,
        )  # fmt: skip
        try:
            await sweep.run()
        finally:
            record = sweep.record.body_json()
            if sweep.record.status in ("ok", "failed", "aborted"):
                self.telemetry.sweep_finished(record)
                if self.mqtt is not None and self.outbox is not None:
                    self.outbox.put_sweep(record)
                if self.node_status is not None:
                    self.node_status.result_published(record)
        return record

    async def _run_session(self, run_id: str, spec: JobSpec | MaxqSpec) -> dict[str, Any]:
        """One job: a session on the service's meters, checkpointed, published when done."""
        if isinstance(spec, MaxqSpec):
            return await self._run_sweep(run_id, spec)
        assert self.meter_set is not None and self.telemetry is not None
        self._check_runnable(spec)  # again: a job restored from the journal was not checked
        if spec.batch_size == "auto":
            spec = await self._auto_batch(run_id, spec)
        self.telemetry.session_started()
        job = self.scheduler.get(run_id) if self.scheduler is not None else None
        session = Session(
            run_id,
            spec,
            self.settings,
            store=self.store,
            observer=LoggingObserver(run_id, logger),
            shared_meters=self.meter_set,
            checkpoint_s=CHECKPOINT_S,
            persist=(self._publish,),
            abort_reason=None if job is None else lambda: job.abort_reason,
        )
        outcome = await session.run()
        return outcome.result

    def _check_runnable(self, spec: JobSpec | MaxqSpec) -> None:
        """Refuse what this service cannot run: a meter it does not sample.

        Raises:
            JobError: the job names a meter this service lacks.
        """
        if not isinstance(spec, JobSpec) or self.meter_set is None:
            return
        available = {m.name for m in self.meter_set.meters}
        wanted = {"ptd" if m.startswith("ptd://") else m for m in spec.meter}
        missing = sorted(wanted - available - {"sim"})
        if missing:
            msg = f"this service does not sample {', '.join(missing)}"
            raise JobError(msg, hint=f"it samples: {', '.join(sorted(available))}")

    async def _auto_batch(self, run_id: str, spec: JobSpec) -> JobSpec:
        """``batch_size: auto``: the cached knee, else a read-only batch sweep on our meters."""

        async def run_sweep(sweep_id: str, sweep_spec: MaxqSpec) -> Any:
            sweep = MaxqSweep(
                sweep_id, sweep_spec, self.settings, store=self.store,
                observer=QuietSweepObserver(), shared_meters=self.meter_set, env=self.env,
            )  # fmt: skip
            return await sweep.run()

        found = await resolve_auto_batch(
            spec, self.settings, env=self.env, sweep_id=f"mq-{run_id}-auto", run_sweep=run_sweep
        )
        logger.info("job %s: %s", run_id, found.describe())
        return spec.model_copy(update={"batch_size": found.batch_size})

    def _publish(self, outcome: SessionOutcome) -> None:
        assert self.telemetry is not None and self.keeper is not None
        self.telemetry.session_finished(outcome.result)
        if self.node_status is not None:
            self.node_status.result_published(outcome.result)
        if outcome.unstored is not None:  # kept in memory, stored and published when it can be
            self.keeper.keep(outcome, publish=self.mqtt is not None and self.outbox is not None)
            return
        if self.mqtt is not None and self.outbox is not None:
            try:
                self.outbox.put_result(outcome.result)
            except InfergyError as err:
                logger.warning("run %s: its result is stored but not queued for MQTT: %s",
                               outcome.result.get("run_id"), err)  # fmt: skip
                self.keeper.keep(outcome, publish=True, stored=True)

    def _job_changed(self, job: Job) -> None:
        self.notifier.status(f"job {job.run_id} {job.state.value}")
        if self.journal is not None:
            self.journal.changed(job)
        if self.mqtt is not None:
            self.mqtt.status_changed()  # the retained status lists the jobs (a fleet follows)

    async def _submit(self, spec: JobSpec | MaxqSpec) -> str:
        assert self.scheduler is not None
        return await self.scheduler.accept(spec)

    async def _cancel(self, run_id: str) -> bool:
        assert self.scheduler is not None
        try:
            self.scheduler.cancel(run_id)
        except InfergyError:
            return False
        return True

    async def _lookup(self, run_id: str) -> dict[str, Any] | None:
        assert self.store is not None
        return await asyncio.to_thread(self.store.find_result, run_id)

    async def _lookup_sweep(self, sweep_id: str) -> dict[str, Any] | None:
        assert self.store is not None
        return await asyncio.to_thread(self.store.find_sweep, sweep_id)

    def _latest_power(self) -> dict[str, float]:
        assert self.telemetry is not None
        out: dict[str, float] = {}
        for src in self.telemetry.telemetry().sources:
            if src.power_w is not None:
                out[src.meter_source] = src.power_w
        return out

    def _simulated_sources(self) -> frozenset[str]:
        assert self.telemetry is not None
        return frozenset(s.meter_source for s in self.telemetry.telemetry().sources if s.simulated)

    def health_details(self) -> dict[str, ComponentHealth]:
        """:meth:`health` with what is wrong for each component that is not up (/healthz)."""
        out: dict[str, ComponentHealth] = {}
        for name, component in self.health().items():
            if isinstance(component, ComponentHealth):  # measured, with its own detail
                out[name] = component
                continue
            detail = None
            if component != "up":
                detail = f"{name} is {component}"
                if name == "meters" and self.meter_set is not None:
                    detail = f"not up: {_down_sources(self.meter_set) or 'no source at all'}"
                elif name == "mqtt" and self.mqtt is not None:
                    m = self.settings.mqtt
                    error = self.mqtt.health().last_error
                    detail = f"not connected to the broker at {m.host}:{m.port}" + (
                        f": {error}" if error else ""
                    )
            out[name] = ComponentHealth(state=component, detail=detail)
        return out

    def health(self) -> dict[str, ComponentHealth | HealthState]:
        """Each component: ``up``, ``degraded`` or ``down`` (for /healthz and READY)."""
        out: dict[str, ComponentHealth | HealthState] = {"api": "up"}
        if self.keeper is None:
            out["store"] = ComponentHealth(state="down", detail="the store is not open yet")
        else:  # measured: its filesystem, damage, results waiting, the job journal
            journal = None if self.journal is None else self.journal.last_error
            out["store"] = self.keeper.health(journal_error=journal)
        meters = self.meter_set
        if meters is not None:
            # as /metrics shows them: up, and a valid sample within the staleness bound
            live = () if self.telemetry is None else self.telemetry.telemetry().sources
            ups = [src.up for src in live] or [
                h.up for m in meters.meters for h in m.health().values()
            ]
            out["meters"] = "up" if ups and all(ups) else ("degraded" if any(ups) else "down")
        if self.mqtt is not None:
            out["mqtt"] = "up" if self.mqtt.connected else "degraded"
        return out


def _state(component: ComponentHealth | HealthState) -> str:
    if isinstance(component, ComponentHealth):
        return component.state + (f" ({component.detail})" if component.detail else "")
    return component


RESTORED_RUNS = 32
"""Stored runs read at start to fill the last-session gauges again."""


def _down_sources(meters: MeterSet) -> str:
    """``ac (connection: refused), gpu0.samples (no sample yet)``: the sources not up."""
    down = [
        f"{source} ({h.last_error or 'no sample yet'})"
        for m in meters.meters
        for source, h in m.health().items()
        if not h.up
    ]
    return ", ".join(down[:8]) + (f" and {len(down) - 8} more" if len(down) > 8 else "")


def restore_last_sessions(store: Store, telemetry: LiveTelemetry) -> None:
    """Fill the last-session gauges from the store, as if the newest runs had just finished.

    The store lists newest first; each restored result replaces the one before it of its
    (scenario, model, backend), so they are applied oldest first and the newest stays. Failed
    and unfinished runs are left out, as a finishing session leaves them out.
    """
    for summary in reversed(store.list_runs(RESTORED_RUNS)):
        if summary.status in ("failed", "running"):
            continue
        with contextlib.suppress(InfergyError):
            telemetry.restore_last_session(store.get_result(summary.run_id))


def _rooted(settings: Settings, env: Mapping[str, str]) -> Settings:
    """A relative ``[output] dir`` lives under the state directory (systemd's cwd is ``/``)."""
    out = settings.output.dir
    if out.is_absolute():
        return settings
    state = settings.serve.state_dir_or_default(env)
    output = settings.output.model_copy(update={"dir": state / out})
    return settings.model_copy(update={"output": output})
