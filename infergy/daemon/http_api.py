"""The HTTP control API of ``infergy serve`` (aiohttp), loopback by default.

Endpoints (``/openapi.json`` describes them): ``POST /v1/runs`` (a JobSpec body -> 202),
``GET /v1/runs``, ``GET /v1/runs/{run_id}``, ``DELETE /v1/runs/{run_id}`` (cancel),
``POST /v1/maxq`` (a MaxqSpec body -> 202), ``GET``/``DELETE /v1/maxq/{sweep_id}``,
``GET /healthz``, ``GET /metrics`` and ``GET /openapi.json``. A body is JSON whatever its
``Content-Type`` says (``curl -d``), except from a web page (an ``Origin`` header), which
must send ``application/json`` (:func:`_from_a_web_page`). Every error is a JSON
``{"errors": [{"loc", "msg", "type"}]}`` body, never a traceback. The service composes it::

    app = build_app(scheduler, token=token, max_body_bytes=65536, health=health,
                    metrics=render_metrics, result_lookup=lookup)
    tg.create_task(serve_http(app, "127.0.0.1", 8765), name="infergy-http")

With a token, ``POST`` and ``DELETE`` need ``Authorization: Bearer <token>``; ``serve_http``
refuses to listen beyond loopback without one.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

from aiohttp import web
from pydantic import BaseModel, ValidationError

from infergy import __version__
from infergy.daemon.http_errors import ApiError, error_middleware, error_response, pydantic_errors
from infergy.daemon.http_models import (
    Accepted,
    ComponentHealth,
    Health,
    HealthState,
    RunDetail,
    RunList,
    RunView,
    SweepDetail,
    openapi_document,
)
from infergy.daemon.jobs import JobSpec
from infergy.daemon.maxq_spec import MaxqSpec
from infergy.daemon.scheduler import JobScheduler, JobState, summarize
from infergy.errors import (
    ConfigError,
    DamagedRunError,
    InfergyError,
    InputError,
    JobConflictError,
    JobError,
    QueueFullError,
    StoreError,
    UnknownRunError,
)
from infergy.store.names import check_name

logger = logging.getLogger(__name__)

T = TypeVar("T")
Components = Mapping[str, ComponentHealth | HealthState]
HealthCheck = Callable[[], Components | Awaitable[Components]]
"""Component name -> its health (``up``/``degraded``/``down`` or a :class:`ComponentHealth`)."""
MetricsRender = Callable[[], tuple[bytes, str] | Awaitable[tuple[bytes, str]]]
"""Returns the exposition body and its content type (``render_metrics`` of the exporter)."""
ResultLookup = Callable[[str], Awaitable[dict[str, Any] | None]]
"""A stored run's result object by run id, ``None`` if unknown (earlier service lifetimes too)."""

CALLBACK_TIMEOUT_S = 5.0
"""Limit on the injected health, metrics and result lookup callables."""
MAX_LIST_LIMIT = 1000
_RANK: dict[HealthState, int] = {"up": 0, "degraded": 1, "down": 2}
_SCHEDULER = web.AppKey("scheduler", JobScheduler)
_STATES = frozenset(s.value for s in JobState)


def build_app(
    scheduler: JobScheduler,
    *,
    token: str | None,
    max_body_bytes: int,
    health: HealthCheck | None = None,
    metrics: MetricsRender | None = None,
    result_lookup: ResultLookup | None = None,
    sweep_lookup: ResultLookup | None = None,
) -> web.Application:
    """The control API application over ``scheduler``.

    Args:
        scheduler: the job queue the endpoints act on.
        token: bearer token required by ``POST``/``DELETE``; ``None`` turns auth off.
        max_body_bytes: larger request bodies get 413 without being read.
        health: component health for ``/healthz`` (no components when ``None``).
        metrics: the ``/metrics`` renderer; ``None`` leaves ``/metrics`` unmounted (404).
        result_lookup: finished runs' results (the store); ``None`` serves only this lifetime.
        sweep_lookup: sweep records by id (the store), also while a sweep runs.
    """
    if token is not None and not token:
        msg = "the API token is empty"
        raise ConfigError(msg, hint="set [serve] token or token_file to a non-empty secret")
    api = _Api(scheduler, token, max_body_bytes, health, metrics, result_lookup, sweep_lookup)
    app = web.Application(client_max_size=max_body_bytes, middlewares=[error_middleware])
    app[_SCHEDULER] = scheduler
    app.router.add_post("/v1/runs", api.submit)
    app.router.add_get("/v1/runs", api.list_runs)
    app.router.add_get("/v1/runs/{run_id}", api.get_run)
    app.router.add_delete("/v1/runs/{run_id}", api.cancel_run)
    app.router.add_post("/v1/maxq", api.submit_sweep)
    app.router.add_get("/v1/maxq/{sweep_id}", api.get_sweep)
    app.router.add_delete("/v1/maxq/{sweep_id}", api.cancel_sweep)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/openapi.json", api.openapi)
    if metrics is not None:
        app.router.add_get("/metrics", api.metrics)
    return app


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the API on this machine (``localhost``, 127/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything: treat it as exposed


async def serve_http(
    app: web.Application,
    host: str,
    port: int,
    *,
    token_set: bool,
    listening: asyncio.Event | None = None,
) -> None:
    """Listen on ``host:port`` until cancelled, then close connections and clean up.

    Put it in the service's TaskGroup; cancelling the task stops the server. ``listening`` is
    set once the socket accepts connections (send ``READY=1`` after it).

    Raises:
        ConfigError: ``host`` is beyond loopback and no token is set, or the port is taken.
    """
    if not token_set and not is_loopback(host):
        msg = f"refusing to listen on {host}:{port} (beyond loopback) without an API token"
        hint = "set [serve] token_file (or token), or listen on 127.0.0.1"
        raise ConfigError(msg, hint=hint)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host.strip("[]"), port)
        try:
            await site.start()
        except OSError as err:
            msg = f"cannot listen on {host}:{port}: {err.strerror or err}"
            raise ConfigError(msg, hint="choose another [serve] listen address") from None
        logger.info("HTTP control API on http://%s:%d", host, port)
        if listening is not None:
            listening.set()
        await asyncio.Event().wait()  # serve until cancelled
    finally:
        await runner.cleanup()


class _Api:
    """The request handlers, over the injected collaborators."""

    def __init__(  # noqa: PLR0917 (private: one call site, in build_app)
        self,
        scheduler: JobScheduler,
        token: str | None,
        max_body_bytes: int,
        health: HealthCheck | None,
        metrics: MetricsRender | None,
        result_lookup: ResultLookup | None,
        sweep_lookup: ResultLookup | None,
    ) -> None:
        self.scheduler = scheduler
        self.token = None if token is None else token.encode()
        self.max_body_bytes = max_body_bytes
        self.health = health
        self.metrics_render = metrics
        self.result_lookup = result_lookup
        self.sweep_lookup = sweep_lookup
        self.openapi_doc = openapi_document(version=__version__, with_metrics=metrics is not None)

    # -- runs -----------------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.Response:
        return await self._submit(request, JobSpec, _status_url)

    async def submit_sweep(self, request: web.Request) -> web.Response:
        return await self._submit(request, MaxqSpec, _sweep_url)

    async def _submit(
        self, request: web.Request, model: type[JobSpec] | type[MaxqSpec], url: Any
    ) -> web.Response:
        self._authorize(request)
        if request.content_type != "application/json" and _from_a_web_page(request):
            given = request.content_type or "none"
            msg = f"a request from a web page must send application/json, not {given}"
            return error_response(415, "unsupported_media_type", msg)
        if (request.content_length or 0) > self.max_body_bytes:
            return _too_large(self.max_body_bytes)
        body = await request.read()  # client_max_size stops chunked bodies that grow too large
        try:
            # strict: JSON types as the OpenAPI schema states them (no "10" for 10, 0 for false)
            spec = model.model_validate_json(body, strict=True)
        except ValidationError as err:
            errors = pydantic_errors(err, loc_prefix=("body",))
            status = 400 if any(e["type"] == "json_invalid" for e in errors) else 422
            return web.json_response({"errors": errors}, status=status)
        except InfergyError as err:  # a validator that raised our error instead of ValueError
            return error_response(422, "value_error", _line(err), ("body",))
        run_id = await self._accept(spec)
        accepted = Accepted(run_id=run_id, status_url=url(run_id), state=JobState.QUEUED)
        return _json(accepted, 202, headers={"Location": accepted.status_url})

    async def _accept(self, spec: JobSpec | MaxqSpec) -> str:
        """The scheduler's run id for ``spec``; its refusals as API errors."""
        try:
            return await self.scheduler.accept(spec)  # journalled before this answers 202
        except QueueFullError as err:
            headers = {"Retry-After": "30"}
            raise ApiError(503, "queue_full", _line(err), headers=headers) from None
        except JobError as err:  # valid, but not runnable here (a meter this node lacks)
            raise ApiError(422, "not_runnable_here", _line(err), ("body",)) from None
        except StoreError as err:  # not recorded, so not accepted: nothing accepted is lost
            msg = f"the job was not accepted: {_line(err)}"
            raise ApiError(503, "store_unavailable", msg) from None

    async def list_runs(self, request: web.Request) -> web.Response:
        status = request.query.get("status")
        if status is not None and status not in _STATES:
            states = ", ".join(s.value for s in JobState)
            msg = f"status must be one of {states}"
            return error_response(400, "invalid_status", msg, ("query", "status"))
        raw_limit = request.query.get("limit", "50")
        if not (
            raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= MAX_LIST_LIMIT
        ):
            msg = f"limit must be an integer from 1 to {MAX_LIST_LIMIT}"
            return error_response(400, "invalid_limit", msg, ("query", "limit"))
        jobs = self.scheduler.list_jobs(
            None if status is None else JobState(status), int(raw_limit)
        )
        return _json(RunList(runs=[RunView.of(j, _status_url(j.run_id)) for j in jobs]))

    async def get_run(self, request: web.Request) -> web.Response:
        run_id = _run_id(request)
        job = self.scheduler.get(run_id)
        stored, damage = None, None
        if (job is None or job.state.finished) and self.result_lookup is not None:
            stored, damage = await self._lookup(run_id)
        if job is not None:
            view = dict(RunView.of(job, _status_url(run_id)))
            if damage is not None:
                view["error"] = _line(damage)
            return _json(RunDetail(**view, result=stored or job.result))
        if damage is not None:  # the row's intact parts are still served
            if damage.status not in _STATES:
                raise ApiError(503, "store_damaged", _line(damage), ("path", "run_id"))
            url = _status_url(run_id)
            state = JobState(damage.status)
            return _json(RunDetail(run_id=run_id, state=state, status_url=url, error=_line(damage)))
        if stored is None:
            return error_response(404, "not_found", f"no run {run_id!r}", ("path", "run_id"))
        status = stored.get("status")
        return _json(
            RunDetail(
                run_id=run_id,
                state=JobState(status) if status in _STATES else JobState.FAILED,
                summary=summarize(stored),
                status_url=_status_url(run_id),
                result=stored,
            )
        )

    async def _lookup(self, run_id: str) -> tuple[dict[str, Any] | None, DamagedRunError | None]:
        """The stored result, or the damage that keeps it from being read."""
        assert self.result_lookup is not None
        try:
            async with asyncio.timeout(CALLBACK_TIMEOUT_S):
                return await self.result_lookup(run_id), None
        except DamagedRunError as err:
            return None, err
        except StoreError as err:
            raise ApiError(503, "store_unavailable", _line(err), ("path", "run_id")) from None

    async def cancel_run(self, request: web.Request) -> web.Response:
        self._authorize(request)
        run_id = _run_id(request)
        try:
            job = self.scheduler.cancel(run_id)
        except UnknownRunError as err:
            return error_response(404, "not_found", _line(err), ("path", "run_id"))
        except JobConflictError as err:
            return error_response(409, "already_finished", _line(err), ("path", "run_id"))
        view = RunView.of(job, _status_url(run_id))
        return _json(RunDetail(**dict(view), result=job.result), 202)

    # -- sweeps ---------------------------------------------------------------------------

    async def get_sweep(self, request: web.Request) -> web.Response:
        sweep_id = _run_id(request, "sweep_id")
        job = self.scheduler.get(sweep_id)
        if job is not None and not isinstance(job.spec, MaxqSpec):
            job = None
        record = None
        if self.sweep_lookup is not None:
            async with asyncio.timeout(CALLBACK_TIMEOUT_S):
                record = await self.sweep_lookup(sweep_id)
        if job is not None:
            view = RunView.of(job, _sweep_url(sweep_id))
            return _json(SweepDetail(**dict(view), record=record or job.result))
        if record is None:
            return error_response(404, "not_found", f"no sweep {sweep_id!r}", ("path", "sweep_id"))
        state = record.get("status")
        return _json(
            SweepDetail(
                run_id=sweep_id,
                state=JobState(state) if state in _STATES else JobState.FAILED,
                summary=summarize(record),
                status_url=_sweep_url(sweep_id),
                record=record,
            )
        )

    async def cancel_sweep(self, request: web.Request) -> web.Response:
        self._authorize(request)
        sweep_id = _run_id(request, "sweep_id")
        job = self.scheduler.get(sweep_id)
        if job is None or not isinstance(job.spec, MaxqSpec):
            msg = f"no queued or running sweep {sweep_id!r}"
            return error_response(404, "not_found", msg, ("path", "sweep_id"))
        try:
            job = self.scheduler.cancel(sweep_id)
        except JobConflictError as err:
            return error_response(409, "already_finished", _line(err), ("path", "sweep_id"))
        view = RunView.of(job, _sweep_url(sweep_id))
        return _json(SweepDetail(**dict(view), record=job.result), 202)

    # -- service --------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        components: dict[str, ComponentHealth] = {}
        if self.health is not None:
            try:
                async with asyncio.timeout(CALLBACK_TIMEOUT_S):
                    raw: Components = await _resolve(self.health())
                components = {str(name): _component(str(name), c) for name, c in raw.items()}
            except (Exception, TimeoutError) as err:  # a broken check is itself a finding
                logger.warning("health check failed: %s", err, exc_info=True)
                components = {"health": ComponentHealth(state="down", detail="the check failed")}
        if not self.scheduler.accepting:
            components["scheduler"] = ComponentHealth(state="degraded", detail="stopping")
        states = [c.state for c in components.values()]
        worst: HealthState = max(states, key=_RANK.__getitem__, default="up")
        body = Health(status=worst, components=components, jobs=self.scheduler.counts())
        return _json(body, 503 if worst == "down" else 200)

    async def metrics(self, request: web.Request) -> web.Response:
        assert self.metrics_render is not None  # mounted only with a renderer
        async with asyncio.timeout(CALLBACK_TIMEOUT_S):
            rendered: tuple[bytes, str] = await _resolve(self.metrics_render())
        payload, content_type = rendered
        return web.Response(body=payload, headers={"Content-Type": content_type})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self.openapi_doc)

    def _authorize(self, request: web.Request) -> None:
        if self.token is None:
            return
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # compare_digest on bytes: constant time whatever the token's characters
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.token
        ):
            msg = "this call needs Authorization: Bearer <token> with the service's API token"
            headers = {"WWW-Authenticate": 'Bearer realm="infergy"'}
            raise ApiError(401, "unauthorized", msg, ("header", "Authorization"), headers)


def _component(name: str, health: ComponentHealth | HealthState) -> ComponentHealth:
    """A component's health; one that is not up always says something (never a null)."""
    c = health if isinstance(health, ComponentHealth) else ComponentHealth(state=health)
    if c.state != "up" and not c.detail:
        c = ComponentHealth(state=c.state, detail=f"{name} is {c.state} (no detail given)")
    return c


def _from_a_web_page(request: web.Request) -> bool:
    """Whether a browser sent it: browsers name the page's origin on every POST.

    ``curl -d '{...}'`` (the documented command) labels its body form data; the body is read
    as JSON whatever its label. A page in a browser must say application/json, which makes
    the browser ask first (a CORS preflight, never granted), so a web page cannot start a
    run on a loopback service without a token.
    """
    return "Origin" in request.headers or request.headers.get("Sec-Fetch-Mode") == "navigate"


async def _resolve(value: T | Awaitable[T]) -> T:
    """Await ``value`` if the injected callable was a coroutine function."""
    if inspect.isawaitable(value):
        return cast(T, await value)
    return value


def _run_id(request: web.Request, key: str = "run_id") -> str:
    """The path's run id, checked like the store checks names (no ``/``, ``..``, options)."""
    try:
        return check_name(key.replace("_", " "), request.match_info[key])
    except InputError as err:
        raise ApiError(400, f"invalid_{key}", _line(err), ("path", key)) from None


def _status_url(run_id: str) -> str:
    return f"/v1/runs/{run_id}"


def _sweep_url(sweep_id: str) -> str:
    return f"/v1/maxq/{sweep_id}"


def _line(err: Exception) -> str:
    hint = getattr(err, "hint", None)
    return f"{err} ({hint})" if hint else str(err)


def _too_large(limit: int) -> web.Response:
    return error_response(413, "too_large", f"the request body is larger than {limit} bytes")


def _json(
    model: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=model.model_dump_json(),
        status=status,
        content_type="application/json",
        headers=headers,
    )
