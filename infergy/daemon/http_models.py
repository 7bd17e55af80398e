"""The HTTP control API's bodies as pydantic models, and its OpenAPI 3.1 document built from them.

Request bodies validate through :class:`~infergy.daemon.jobs.JobSpec` (runs) and
:class:`~infergy.daemon.maxq_spec.MaxqSpec` (sweeps); responses are the models
below. :func:`openapi_document` derives every schema with ``model_json_schema``, so the
published document cannot drift from what the handlers validate and return.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from infergy.daemon.jobs import JobSpec
from infergy.daemon.maxq_spec import MaxqSpec
from infergy.daemon.scheduler import Job, JobState

HealthState = Literal["up", "degraded", "down"]
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""What a run id may look like (``infergy.store.check_name``): no ``/``, no ``..``."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorItem(_Body):
    """One problem with a request: where (``loc``), what (``msg``), and a machine-readable type."""

    loc: list[str | int] = Field(default_factory=list)
    msg: str
    type: str


class ErrorBody(_Body):
    """Every error response: a list of problems (422 lists one per invalid field)."""

    errors: list[ErrorItem]


class Accepted(_Body):
    """``202`` for a submitted job: poll ``status_url`` for its state and result."""

    run_id: str
    status_url: str
    state: JobState


class RunView(_Body):
    """A job as the service knows it (times: Unix nanoseconds; ``None`` until they happen)."""

    run_id: str
    state: JobState
    spec: JobSpec | MaxqSpec | None = None
    """The submitted job (a run's or a sweep's); ``None`` for one known only from the store."""
    submitted_unix_ns: int | None = None
    started_unix_ns: int | None = None
    finished_unix_ns: int | None = None
    summary: dict[str, Any] | None = None
    """The result's headline: status, problems, samples/s, per-source efficiency."""
    error: str | None = None
    status_url: str

    @classmethod
    def of(cls, job: Job, status_url: str) -> RunView:
        """The view of a scheduler job."""
        return cls(
            run_id=job.run_id,
            state=job.state,
            spec=job.spec,
            submitted_unix_ns=job.submitted_unix_ns,
            started_unix_ns=job.started_unix_ns,
            finished_unix_ns=job.finished_unix_ns,
            summary=job.summary,
            error=job.error,
            status_url=status_url,
        )


class RunDetail(RunView):
    """``GET /v1/runs/{run_id}``: the view plus the full result object once there is one."""

    result: dict[str, Any] | None = None
    """The result JSON (ARCHITECTURE.md, "Result"), from the store when it holds it."""


class SweepDetail(RunView):
    """``GET /v1/maxq/{sweep_id}``: the job's view plus the sweep record (docs/maxq.md).

    The record is in the store from the sweep's first point on and grows point by point.
    """

    record: dict[str, Any] | None = None


class RunList(_Body):
    """``GET /v1/runs``: this service lifetime's jobs, newest first."""

    runs: list[RunView]


class ComponentHealth(_Body):
    """One component's health: ``up``, ``degraded`` (an optional part is missing) or ``down``."""

    state: HealthState
    detail: str | None = None


class Health(_Body):
    """``GET /healthz``: the worst component state, each component, and job counts by state."""

    status: HealthState
    components: dict[str, ComponentHealth]
    jobs: dict[str, int]


_RESPONSES = (Accepted, RunList, RunDetail, SweepDetail, Health, ErrorBody)


def openapi_document(*, version: str, with_metrics: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the API, schemas generated from the models above."""
    keys, defs = models_json_schema(
        [
            (JobSpec, "validation"),
            (MaxqSpec, "validation"),
            *((m, "serialization") for m in _RESPONSES),
        ],
        ref_template="#/components/schemas/{model}",
    )
    spec_ref = keys[(JobSpec, "validation")]
    sweep_ref = keys[(MaxqSpec, "validation")]
    ref = {m.__name__: keys[(m, "serialization")] for m in _RESPONSES}

    def body(model: str, description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ref[model]}}}

    def error(description: str) -> dict[str, Any]:
        return body("ErrorBody", description)

    unauthorized = error("missing or wrong bearer token (only when a token is configured)")
    run_id = {
        "name": "run_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": RUN_ID_PATTERN},
    }
    paths: dict[str, Any] = {
        "/v1/runs": {
            "post": {
                "summary": "Submit a measurement job",
                "operationId": "submitRun",
                "security": [{"bearer": []}, {}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": spec_ref}},
                },
                "responses": {
                    "202": body("Accepted", "queued"),
                    "400": error("the body is not valid JSON"),
                    "401": unauthorized,
                    "413": error("the body is larger than [serve] max_body_bytes"),
                    "415": error("the body is not application/json"),
                    "422": error("the job spec is invalid: one item per field"),
                    "503": error(
                        "the queue is full, the service is stopping, or the store"
                        " cannot record the job"
                    ),
                },
            },
            "get": {
                "summary": "List this service lifetime's jobs, newest first",
                "operationId": "listRuns",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": [s.value for s in JobState]},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": {
                    "200": body("RunList", "the jobs"),
                    "400": error("bad status or limit"),
                },
            },
        },
        "/v1/runs/{run_id}": {
            "parameters": [run_id],
            "get": {
                "summary": "A job's state, and its result once finished",
                "operationId": "getRun",
                "responses": {
                    "200": body("RunDetail", "the job"),
                    "400": error("the run id is malformed"),
                    "404": error("no such run"),
                    "503": error(
                        "the store cannot be read (a damaged row is answered 200,"
                        " with its state and the damage in error)"
                    ),
                },
            },
            "delete": {
                "summary": "Cancel a queued job or abort a running one",
                "operationId": "cancelRun",
                "security": [{"bearer": []}, {}],
                "responses": {
                    "202": body("RunDetail", "cancelled (queued) or being aborted (running)"),
                    "400": error("the run id is malformed"),
                    "401": unauthorized,
                    "404": error("no queued or running job with this id"),
                    "409": error("the job has already finished"),
                },
            },
        },
        "/v1/maxq": {
            "post": {
                "summary": "Submit a MaxQ tuning sweep (power limits, clocks, batch, precision)",
                "operationId": "submitSweep",
                "security": [{"bearer": []}, {}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": sweep_ref}},
                },
                "responses": {
                    "202": body("Accepted", "queued; poll status_url"),
                    "400": error("the body is not valid JSON"),
                    "401": unauthorized,
                    "413": error("the body is larger than [serve] max_body_bytes"),
                    "415": error("the body is not application/json"),
                    "422": error("the sweep spec is invalid: one item per field"),
                    "503": error("the queue is full or the service is stopping"),
                },
            },
        },
        "/v1/maxq/{sweep_id}": {
            "parameters": [run_id | {"name": "sweep_id"}],
            "get": {
                "summary": "A sweep's state and its record (it grows point by point)",
                "operationId": "getSweep",
                "responses": {
                    "200": body("SweepDetail", "the sweep"),
                    "400": error("the sweep id is malformed"),
                    "404": error("no such sweep"),
                },
            },
            "delete": {
                "summary": "Cancel a queued sweep or abort a running one (settings restored)",
                "operationId": "cancelSweep",
                "security": [{"bearer": []}, {}],
                "responses": {
                    "202": body("SweepDetail", "cancelled (queued) or being aborted (running)"),
                    "400": error("the sweep id is malformed"),
                    "401": unauthorized,
                    "404": error("no queued or running sweep with this id"),
                    "409": error("the sweep has already finished"),
                },
            },
        },
        "/healthz": {
            "get": {
                "summary": "Component health (200 up or degraded, 503 down)",
                "operationId": "health",
                "responses": {
                    "200": body("Health", "serving"),
                    "503": body("Health", "a required component is down"),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {"200": {"description": "the OpenAPI document"}},
            }
        },
    }
    if with_metrics:
        paths["/metrics"] = {
            "get": {
                "summary": "Prometheus metrics (text exposition format)",
                "operationId": "metrics",
                "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}},
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "infergy control API",
            "version": version,
            "description": "Submit, follow and cancel power measurement jobs of `infergy serve`.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
