"""JSON errors for the HTTP control API: one body shape, never a traceback.

Every error response is ``{"errors": [{"loc": [...], "msg": "...", "type": "..."}]}``: a 422
lists one item per invalid field (pydantic's locations), other errors carry one item. The
middleware also turns aiohttp's own errors (unknown route 404, 405, 413 for a body over the
limit) and any unexpected exception (500, logged with its traceback) into that shape; a client
that hangs up mid-request is logged as that, in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

logger = logging.getLogger(__name__)

_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}
_KEEP_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


class ApiError(Exception):
    """An error a handler answers with: status, machine-readable type, message, location."""

    def __init__(
        self,
        status: int,
        type_: str,
        msg: str,
        loc: tuple[str | int, ...] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(msg)
        self.status = status
        self.type = type_
        self.msg = msg
        self.loc = tuple(loc)
        self.headers = dict(headers or {})


def error_response(
    status: int,
    type_: str,
    msg: str,
    loc: tuple[str | int, ...] = (),
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """One-item error body with ``status``."""
    item = {"loc": list(loc), "msg": msg, "type": type_}
    return web.json_response({"errors": [item]}, status=status, headers=headers)


def pydantic_errors(err: ValidationError, loc_prefix: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Pydantic's errors as ``{loc, msg, type}`` items; the offending input is not echoed."""
    return [
        {"loc": [*loc_prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in err.errors(include_url=False, include_input=False, include_context=False)
    ]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure with the JSON error body."""
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err.status, err.type, err.msg, err.loc, err.headers)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        headers = {k: v for k, v in err.headers.items() if k in _KEEP_HEADERS}
        msg = err.text if err.text and not err.text.startswith(f"{err.status}:") else err.reason
        return error_response(err.status, _TYPES.get(err.status, "http_error"), msg, (), headers)
    except ConnectionResetError:  # the client hung up mid-request: its business, not a bug
        logger.info("%s %s: the client hung up before the request was complete",
                    request.method, request.path)  # fmt: skip
        return error_response(400, "bad_request", "the request was not complete")
    except TimeoutError:
        logger.warning("%s %s: a collaborator timed out", request.method, request.path)
        return error_response(503, "timeout", "a service component did not answer in time")
    except Exception:  # the last line of defence: log it, answer without details
        logger.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal", "internal error; the service log has the details")
