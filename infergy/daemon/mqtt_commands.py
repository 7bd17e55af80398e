"""MQTT job requests: ``cmd/run``, ``cmd/maxq`` and ``cmd/cancel``, answered on ``reply/<id>``.

A request is a JSON object with a ``request_id`` (1-64 of ``[A-Za-z0-9_-]``: it becomes a
topic level, so nothing else is allowed) and the verb's fields::

    infergy/edge-01/cmd/run     {"request_id": "r1", "backend": "onnxruntime", "duration": 10}
    infergy/edge-01/cmd/cancel  {"request_id": "r2", "run_id": "20261123-101500-ab12"}

``cmd/run`` validates the rest of the object with :class:`infergy.daemon.jobs.JobSpec`, the
model of the HTTP API and the ``infergy run`` flags; ``cmd/maxq`` with
:class:`infergy.daemon.maxq_spec.MaxqSpec` (``POST /v1/maxq``, the ``infergy maxq`` flags),
and its reply carries the ``sweep_id``; ``cmd/cancel`` takes a run or sweep id. Replies (QoS
1, not retained)::

    infergy/edge-01/reply/r1    {"ok": true, "request_id": "r1", "run_id": "..."}
    infergy/edge-01/reply/r2    {"ok": false, "request_id": "r2",
                                 "errors": [{"loc": ["duration"], "msg": "..."}]}

A bad payload never raises out of here: it gets an error reply and a log line. Without a
readable ``request_id`` there is nowhere to reply, so the request is logged and dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infergy.daemon.jobs import JobSpec
from infergy.daemon.maxq_spec import MaxqSpec
from infergy.errors import InfergyError
from infergy.exporters.mqtt_support import Reply

__all__ = [
    "MAX_COMMAND_BYTES",
    "CancelFn",
    "CommandHandler",
    "Reply",
    "SubmitFn",
]

MAX_COMMAND_BYTES = 64 * 1024
"""Larger requests are refused (a job spec is a few hundred bytes)."""

SubmitFn = Callable[[JobSpec], Awaitable[str]]
"""Queues a validated job; returns its run id (raise an ``InfergyError`` to refuse it)."""
SubmitSweepFn = Callable[[MaxqSpec], Awaitable[str]]
"""Queues a validated sweep; returns its sweep id."""
CancelFn = Callable[[str], Awaitable[bool]]
"""Cancels a queued or running job; ``False`` when there is no such job to cancel."""

REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SNIFF_ID = re.compile(rb'"request_id"\s*:\s*"([A-Za-z0-9_-]{1,64})"')
_log = logging.getLogger("infergy.mqtt.commands")


class _CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _error(request_id: str, *errors: tuple[list[str | int], str]) -> Reply:
    listed = [{"loc": loc, "msg": msg} for loc, msg in errors]
    return Reply(request_id, {"ok": False, "request_id": request_id, "errors": listed})


def _reject_constant(name: str) -> None:
    msg = f"{name} is not valid JSON"
    raise ValueError(msg)


def _parse(payload: bytes) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """``(request_id, fields, problem)``: fields is ``None`` when ``problem`` says why."""
    if len(payload) > MAX_COMMAND_BYTES:
        sniffed = _SNIFF_ID.search(payload, 0, MAX_COMMAND_BYTES)
        problem = f"payload of {len(payload)} bytes is larger than {MAX_COMMAND_BYTES}"
        return (sniffed.group(1).decode() if sniffed else None), None, problem
    try:
        data = json.loads(payload, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError too
        sniffed = _SNIFF_ID.search(payload)
        detail = str(err) if isinstance(err, ValueError) else "nested too deeply"
        return (sniffed.group(1).decode() if sniffed else None), None, f"not JSON: {detail}"
    if not isinstance(data, dict):
        return None, None, f"the payload is a JSON {type(data).__name__}, not an object"
    request_id = data.pop("request_id", None)
    if not (isinstance(request_id, str) and REQUEST_ID.fullmatch(request_id)):
        problem = f"request_id {request_id!r} is missing or not 1-64 of [A-Za-z0-9_-]"
        return None, None, problem
    return request_id, data, None


def _field_errors(err: ValidationError) -> list[tuple[list[str | int], str]]:
    return [(list(e["loc"]), e["msg"]) for e in err.errors(include_url=False)]


class CommandHandler:
    """Validates requests and calls the injected ``submit`` / ``cancel``.

    Args:
        submit: queues a job (``None``: ``cmd/run`` is answered "not accepted here").
        cancel: cancels a job (``None``: likewise for ``cmd/cancel``).
        timeout_s: limit of one ``submit`` or ``cancel`` call (then an error reply).
        submit_sweep: queues a MaxQ sweep (``None``: ``cmd/maxq`` is not accepted here).
    """

    def __init__(
        self,
        submit: SubmitFn | None,
        cancel: CancelFn | None,
        *,
        timeout_s: float = 10.0,
        submit_sweep: SubmitSweepFn | None = None,
    ) -> None:
        self._submit = submit
        self._submit_sweep = submit_sweep
        self._cancel = cancel
        self._timeout_s = timeout_s
        self.requests_total = 0
        """Requests received (any verb, valid or not)."""
        self.errors_total = 0
        """Requests answered with an error, or dropped because no reply was possible."""

    async def handle(self, verb: str, payload: bytes) -> Reply | None:
        """Validate and execute one request; the reply, or ``None`` if none is possible."""
        self.requests_total += 1
        request_id, fields, problem = _parse(payload)
        if request_id is None:
            self.errors_total += 1
            _log.warning("MQTT cmd/%s dropped (no reply possible): %s", verb, problem)
            return None
        if fields is None:
            reply = _error(request_id, ([], problem or "invalid request"))
        else:
            reply = await self._execute(verb, request_id, fields)
        if not reply.ok:
            self.errors_total += 1
            _log.warning("MQTT cmd/%s %s refused: %s", verb, request_id, reply.body["errors"])
        return reply

    async def _execute(self, verb: str, request_id: str, fields: dict[str, Any]) -> Reply:
        problem: tuple[list[str | int], str]
        try:
            if verb == "run" and self._submit is not None:
                return await self._run(self._submit, request_id, fields)
            if verb == "maxq" and self._submit_sweep is not None:
                return await self._maxq(self._submit_sweep, request_id, fields)
            if verb == "cancel" and self._cancel is not None:
                return await self._cancel_job(self._cancel, request_id, fields)
            verbs = ", ".join(v for v, f in self._verbs().items() if f)
            problem = ([], f"verb {verb!r} is not accepted here ({verbs})")
        except ValidationError as err:
            return _error(request_id, *_field_errors(err))
        except InfergyError as err:  # refused by the job queue (full, unknown GPU...)
            problem = ([], str(err) + (f" ({err.hint})" if err.hint else ""))
        except TimeoutError:
            problem = ([], f"the service did not answer within {self._timeout_s:g} s; retry later")
        except Exception as err:  # never let one request take the service down
            _log.exception("MQTT cmd/%s %s failed", verb, request_id)
            problem = ([], f"internal error: {type(err).__name__}: {err}")
        return _error(request_id, problem)

    async def _run(self, submit: SubmitFn, request_id: str, fields: dict[str, Any]) -> Reply:
        spec = JobSpec.model_validate(fields)
        async with asyncio.timeout(self._timeout_s):
            run_id = await submit(spec)
        _log.info("MQTT cmd/run %s: queued run %s", request_id, run_id)
        return Reply(request_id, {"ok": True, "request_id": request_id, "run_id": run_id})

    def _verbs(self) -> dict[str, bool]:
        return {
            "run": self._submit is not None,
            "maxq": self._submit_sweep is not None,
            "cancel": self._cancel is not None,
        }

    async def _maxq(self, submit: SubmitSweepFn, request_id: str, fields: dict[str, Any]) -> Reply:
        spec = MaxqSpec.model_validate(fields)
        async with asyncio.timeout(self._timeout_s):
            sweep_id = await submit(spec)
        _log.info("MQTT cmd/maxq %s: queued sweep %s", request_id, sweep_id)
        body = {"ok": True, "request_id": request_id, "sweep_id": sweep_id}
        return Reply(request_id, body)

    async def _cancel_job(self, cancel: CancelFn, request_id: str, fields: dict[str, Any]) -> Reply:
        run_id = _CancelBody.model_validate(fields).run_id
        async with asyncio.timeout(self._timeout_s):
            cancelled = await cancel(run_id)
        if not cancelled:
            msg = f"no queued or running job {run_id!r} to cancel"
            return _error(request_id, (["run_id"], msg))
        _log.info("MQTT cmd/cancel %s: cancelled run %s", request_id, run_id)
        return Reply(request_id, {"ok": True, "request_id": request_id, "run_id": run_id})
