"""``infergy serve``: the long-running service, and its composition root.

One asyncio TaskGroup holds everything: the meters (sampling all the time, so idle power is
visible between runs), the live telemetry behind ``/metrics``, the job scheduler (sessions one
at a time per GPU set), the HTTP control API, the MQTT publisher and the systemd watchdog.

Startup: open the store (runs left ``running`` by a killed process become ``aborted``, their
checkpointed data kept), open the meters, start everything, then ``READY=1``. A missing
optional part (no GPU, no analyzer, the broker down) degrades the service, never stops it.
SIGTERM/SIGINT: refuse new jobs, let the current one finish or abort it after
``[serve] stop_timeout_s``, flush the MQTT outbox, ``STOPPING=1``. SIGHUP: reload the config
for future sessions (analysis thresholds, output, session phases); parts that would need a
restart (listen address, meters, broker) are named in the log and left as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from infergy import __version__
from infergy.config.settings import Settings, load_settings
from infergy.core.clock import SessionClock
from infergy.daemon.http_api import build_app, serve_http
from infergy.daemon.http_models import ComponentHealth
from infergy.daemon.jobs import JobSpec
from infergy.daemon.meters import MeterSet
from infergy.daemon.mqtt_commands import CommandHandler
from infergy.daemon.notify import Notifier
from infergy.daemon.scheduler import Job, JobScheduler
from infergy.daemon.session import Session, SessionOutcome
from infergy.daemon.session_types import unwrapped
from infergy.errors import ConfigError, InfergyError, JobError
from infergy.exporters.outbox import Outbox
from infergy.exporters.prometheus import build_registry, render_metrics
from infergy.exporters.telemetry import LiveTelemetry
from infergy.store.db import Store

logger = logging.getLogger(__name__)
SERVICE_CAPACITY = 1 << 18
"""Samples kept per source by the service: 87 min at 50 Hz (a session longer than that loses
its oldest samples, and its coverage says so); 4 MiB per source, committed at startup."""
PTD_RESTART_S = 3600.0
"""Between sessions, the analyzer's measurement is restarted this often (bounded PTD state)."""
CHECKPOINT_S = 10.0
"""How often a running session's data is checkpointed into the store."""
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
        self.mqtt: Any = None
        self.port: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until a stop is requested (SIGTERM, SIGINT or :meth:`request_stop`).

        Raises:
            InfergyError: a required part cannot start (the store, the HTTP listener).
        """
        s = self.settings
        path = s.store.path_or_default(self.env)
        self.store = store = await asyncio.to_thread(Store.open, path)
        try:
            interrupted = await asyncio.to_thread(
                store.mark_interrupted,
                "the service stopped during this run (killed or crashed); the data kept is "
                "its last checkpoint",
            )
            for run_id in interrupted:
                logger.warning("run %s was interrupted by a previous stop: marked aborted", run_id)
            await self._serve(store, interrupted)
        finally:
            await asyncio.to_thread(store.close)

    async def _serve(self, store: Store, interrupted: list[str]) -> None:
        s = self.settings
        token = s.serve.api_token()
        clock = SessionClock()
        self.meter_set = meters = await MeterSet.open(
            (), s, clock, env=self.env, capacity=SERVICE_CAPACITY
        )
        try:
            nvml = meters.nvml()
            if nvml is not None:
                nvml.set_counter_poll_factor(s.meters.nvml.idle_counter_poll_factor)
            self.telemetry = telemetry = LiveTelemetry(meters.meters, clock=clock)
            await asyncio.to_thread(restore_last_sessions, store, telemetry)
            registry = build_registry(telemetry)
            self.outbox = Outbox(store, max_entries=s.mqtt.outbox_max_entries)
            self.scheduler = scheduler = JobScheduler(
                self._run_session, max_queued=s.serve.max_queued_jobs, on_change=self._job_changed
            )
            if s.mqtt.enabled:
                from infergy.exporters.mqtt import MqttPublisher  # noqa: PLC0415

                for run_id in interrupted:  # their final (aborted) results go out like any other
                    result = await asyncio.to_thread(store.find_result, run_id)
                    if result is not None:
                        await asyncio.to_thread(self.outbox.put_result, result)

                self.mqtt = MqttPublisher(
                    s.mqtt,
                    node=s.node_name,
                    outbox=self.outbox,
                    latest_power=self._latest_power,
                    simulated=self._simulated_sources,
                    commands=CommandHandler(self._submit, self._cancel, timeout_s=s.mqtt.timeout_s),
                )
            app = build_app(
                scheduler,
                token=token,
                max_body_bytes=s.serve.max_body_bytes,
                health=self.health_details,
                metrics=lambda: render_metrics(registry),
                result_lookup=self._lookup,
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
        finally:
            await meters.stop_analyzers()
            await meters.aclose()
            logger.info("infergy stopped")

    async def _lifecycle(self, listening: asyncio.Event) -> None:
        """Ready when listening; on a stop request drain, flush, and end the TaskGroup."""
        async with asyncio.timeout(30):
            await listening.wait()
        for _ in range(100):  # up to 10 s for the meters' first samples, so READY tells the truth
            if self.health().get("meters") != "down":
                break
            await asyncio.sleep(0.1)
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.health().items()))
        self.notifier.ready(f"serving on {self.settings.serve.listen}: {parts}")
        logger.info("infergy %s ready on %s (%s)", __version__, self.settings.serve.listen, parts)
        self.ready.set()
        await self.stop_requested.wait()
        self.notifier.stopping("stopping: finishing the current job")
        assert self.scheduler is not None
        await self.scheduler.drain(self.settings.serve.stop_timeout_s)
        if self.mqtt is not None:
            self.notifier.status("stopping: flushing the MQTT outbox")
            await self.mqtt.flush(10.0)
        raise _StopError

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

    async def _run_session(self, run_id: str, spec: JobSpec) -> dict[str, Any]:
        """One job: a session on the service's meters, checkpointed, published when done."""
        assert self.meter_set is not None and self.telemetry is not None
        available = {m.name for m in self.meter_set.meters}
        wanted = {"ptd" if m.startswith("ptd://") else m for m in spec.meter}
        missing = sorted(wanted - available - {"sim"})
        if missing:
            msg = f"this service does not sample {', '.join(missing)}"
            raise JobError(msg, hint=f"it samples: {', '.join(sorted(available))}")
        self.telemetry.session_started()
        session = Session(
            run_id,
            spec,
            self.settings,
            store=self.store,
            shared_meters=self.meter_set,
            checkpoint_s=CHECKPOINT_S,
            persist=(self._publish,),
        )
        outcome = await session.run()
        return outcome.result

    def _publish(self, outcome: SessionOutcome) -> None:
        assert self.telemetry is not None and self.outbox is not None
        self.telemetry.session_finished(outcome.result)
        if self.mqtt is not None:
            self.outbox.put_result(outcome.result)

    def _job_changed(self, job: Job) -> None:
        self.notifier.status(f"job {job.run_id} {job.state.value}")

    async def _submit(self, spec: JobSpec) -> str:
        assert self.scheduler is not None
        return self.scheduler.submit(spec)

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
        for name, state in self.health().items():
            detail = None
            if state != "up":
                detail = f"{name} is {state}"
                if name == "meters" and self.meter_set is not None:
                    detail = f"not up: {_down_sources(self.meter_set) or 'no source at all'}"
                elif name == "mqtt" and self.mqtt is not None:
                    m = self.settings.mqtt
                    error = self.mqtt.health().last_error
                    detail = f"not connected to the broker at {m.host}:{m.port}" + (
                        f": {error}" if error else ""
                    )
            out[name] = ComponentHealth(state=state, detail=detail)
        return out

    def health(self) -> dict[str, Literal["up", "degraded", "down"]]:
        """Each component: ``up``, ``degraded`` or ``down`` (for /healthz and READY)."""
        out: dict[str, Literal["up", "degraded", "down"]] = {"store": "up", "api": "up"}
        meters = self.meter_set
        if meters is not None:
            ups = [h.up for m in meters.meters for h in m.health().values()]
            out["meters"] = "up" if ups and all(ups) else ("degraded" if any(ups) else "down")
        if self.mqtt is not None:
            out["mqtt"] = "up" if self.mqtt.connected else "degraded"
        return out


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
