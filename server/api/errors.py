"""Where the server's errors become HTTP answers; the only place that maps them to status codes.

Every error answer is an RFC 9457 problem (`application/problem+json`) whose `type` is one of
`ProblemType`, a stable path under `/problems/` per error class (identifiers, not pages to fetch).
"""

from __future__ import annotations

import enum
import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from server.api import request_id as request_ids
from server.errors import (
    ConflictError,
    DigestMismatchError,
    InputError,
    NotFoundError,
    OnlineKeyError,
    RangeNotSatisfiableError,
    RemoteError,
    TooLargeError,
    TooManyAttemptsError,
)
from server.schemas.problems import MEDIA_TYPE

logger = logging.getLogger(__name__)
PROBLEMS_PATH = "/problems/"


class ProblemType(enum.Enum):
    """An error class: its HTTP status and title; `uri` is its stable `type`."""

    digest_mismatch = (400, "Body does not match its declared SHA-256")
    incomplete_body = (400, "Request body incomplete")
    unauthorized = (401, "Not authenticated")
    forbidden = (403, "Not allowed")
    not_found = (404, "Not found")
    method_not_allowed = (405, "Method not allowed")
    conflict = (409, "Conflicts with what is stored")
    too_large = (413, "Request body too large")
    range_not_satisfiable = (416, "Range not satisfiable")
    invalid_request = (422, "Invalid request")
    idempotency_key_reused = (422, "Idempotency-Key already used for another request")
    too_many_attempts = (429, "Too many failed credential attempts")
    internal_error = (500, "Internal server error")
    unavailable = (503, "Service unavailable")

    def __init__(self, status: int, title: str) -> None:
        self.status = status
        self.title = title

    @property
    def uri(self) -> str:
        return PROBLEMS_PATH + self.name.replace("_", "-")


class IdempotencyKeyReusedError(InputError):
    """An `Idempotency-Key` came back with another request than the one it first answered."""


# First match wins: subclasses before their roots.
_PROBLEMS: list[tuple[type[Exception], ProblemType]] = [
    (NotFoundError, ProblemType.not_found),
    (ConflictError, ProblemType.conflict),
    (TooLargeError, ProblemType.too_large),
    (DigestMismatchError, ProblemType.digest_mismatch),
    (RangeNotSatisfiableError, ProblemType.range_not_satisfiable),
    (IdempotencyKeyReusedError, ProblemType.idempotency_key_reused),
    (InputError, ProblemType.invalid_request),
]
_BY_STATUS = {kind.status: kind for kind in ProblemType if kind is not ProblemType.idempotency_key_reused
              and kind.status != 400}


def problem(kind: ProblemType, detail: str, instance: str, **extensions: Any) -> dict[str, Any]:
    """The members of a problem of `kind` (extension members after the standard ones)."""
    return {"type": kind.uri, "title": kind.title, "status": kind.status, "detail": detail, "instance": instance,
            **extensions}


def problem_bytes(kind: ProblemType, detail: str, instance: str) -> bytes:
    """A problem as the bytes of a response body, for ASGI code that answers without a `Request`."""
    return json.dumps(problem(kind, detail, instance), separators=(",", ":")).encode()


def answer(request: Request, kind: ProblemType, detail: str, headers: dict[str, str] | None = None,
           **extensions: Any) -> JSONResponse:
    """A problem response for `request`."""
    return JSONResponse(problem(kind, detail, request.url.path, **extensions), status_code=kind.status,
                        headers=headers, media_type=MEDIA_TYPE)


def _retry_after(request: Request) -> str:
    return str(request.app.state.backends.settings.retry_after_s)


async def _mapped(request: Request, exc: Exception) -> Response:
    kind = next(kind for error, kind in _PROBLEMS if isinstance(exc, error))
    headers = {"Content-Range": f"bytes */{exc.size}"} if isinstance(exc, RangeNotSatisfiableError) else None
    return answer(request, kind, str(exc), headers)


async def _throttled(request: Request, exc: Exception) -> Response:
    retry_after = exc.retry_after_s if isinstance(exc, TooManyAttemptsError) else 1
    return answer(request, ProblemType.too_many_attempts, str(exc), {"Retry-After": str(retry_after)})


async def _bad_value(request: Request, exc: Exception) -> Response:
    logger.info("%s %s: value refused by the database: %s", request.method, request.url.path, exc)
    return answer(request, ProblemType.invalid_request, "a value is out of range")


async def _disconnected(request: Request, exc: Exception) -> Response:
    logger.info("%s %s: client went away mid-request", request.method, request.url.path)
    return answer(request, ProblemType.incomplete_body, "request body incomplete")


async def _unavailable(request: Request, exc: Exception) -> Response:
    logger.warning("%s %s: backing service unavailable: %s", request.method, request.url.path, exc)
    service, detail = "database", "database unavailable, retry later"
    if isinstance(exc, RemoteError):
        service, detail = exc.service, f"{exc.service} unavailable, retry later"
    elif isinstance(exc, OnlineKeyError):  # the server cannot sign until an operator installs its keys
        service, detail = "online keys", str(exc)
    return answer(request, ProblemType.unavailable, detail, {"Retry-After": _retry_after(request)}, service=service)


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


async def _invalid(request: Request, exc: Exception) -> Response:
    found = exc.errors() if isinstance(exc, RequestValidationError) else []
    errors = [{"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")), "type": str(error.get("type"))}
              for error in found]
    first = f"{_where(tuple(errors[0]['loc']))}: {errors[0]['msg']}" if errors else "the request is not valid"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return answer(request, ProblemType.invalid_request, first + more, errors=errors)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Errors raised as `HTTPException`: routing (404, 405) and the authentication dependencies (401, 403)."""
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code < 400:
        return Response(status_code=exc.status_code, headers=headers)
    kind = _BY_STATUS.get(exc.status_code)
    if kind is not None:
        return answer(request, kind, str(exc.detail), headers)
    title = HTTPStatus(exc.status_code).phrase
    body = {"type": "about:blank", "title": title, "status": exc.status_code, "detail": str(exc.detail),
            "instance": request.url.path}
    return JSONResponse(body, status_code=exc.status_code, headers=headers, media_type=MEDIA_TYPE)


async def _internal(request: Request, exc: Exception) -> Response:
    # The traceback is logged by the server; the answer tells nothing about the code, only the request's id
    # (the 500 is built outside the request-id middleware, so the header is set here too).
    request_id = request_ids.current.get()
    if request_id is None:
        return answer(request, ProblemType.internal_error, "the server failed to answer; the failure is logged")
    return answer(request, ProblemType.internal_error, "the server failed to answer; the failure is logged",
                  {request_ids.HEADER: request_id}, request_id=request_id)


def install(app: FastAPI) -> None:
    """Register the exception handlers on `app`."""
    for error, _kind in _PROBLEMS:
        app.add_exception_handler(error, _mapped)
    app.add_exception_handler(TooManyAttemptsError, _throttled)  # the most specific handler wins
    app.add_exception_handler(ClientDisconnect, _disconnected)
    app.add_exception_handler(DataError, _bad_value)  # last line of defence; schemas bound values first
    for outage in (RemoteError, OperationalError, InterfaceError, PoolTimeoutError, OnlineKeyError):
        app.add_exception_handler(outage, _unavailable)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal)
