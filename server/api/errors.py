"""Where the server's errors become HTTP answers; the only place that maps them to status codes."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.requests import ClientDisconnect

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

logger = logging.getLogger(__name__)
_STATUS: list[tuple[type[Exception], int]] = [
    (NotFoundError, status.HTTP_404_NOT_FOUND),
    (ConflictError, status.HTTP_409_CONFLICT),
    (TooLargeError, status.HTTP_413_CONTENT_TOO_LARGE),
    (DigestMismatchError, status.HTTP_400_BAD_REQUEST),
    (RangeNotSatisfiableError, status.HTTP_416_RANGE_NOT_SATISFIABLE),
    (OnlineKeyError, status.HTTP_503_SERVICE_UNAVAILABLE),
    (InputError, status.HTTP_422_UNPROCESSABLE_CONTENT),
]


def _retry_after(request: Request) -> str:
    return str(request.app.state.backends.settings.retry_after_s)


async def _client_error(request: Request, exc: Exception) -> JSONResponse:
    code = next(code for kind, code in _STATUS if isinstance(exc, kind))
    return JSONResponse({"detail": str(exc)}, status_code=code)


async def _throttled(request: Request, exc: Exception) -> JSONResponse:
    retry_after = exc.retry_after_s if isinstance(exc, TooManyAttemptsError) else 1
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                        headers={"Retry-After": str(retry_after)})


async def _bad_value(request: Request, exc: Exception) -> JSONResponse:
    logger.info("%s %s: value refused by the database: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "a value is out of range"}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _disconnected(request: Request, exc: Exception) -> JSONResponse:
    logger.info("%s %s: client went away mid-request", request.method, request.url.path)
    return JSONResponse({"detail": "request body incomplete"}, status_code=status.HTTP_400_BAD_REQUEST)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("%s %s: backing service unavailable: %s", request.method, request.url.path, exc)
    service = exc.service if isinstance(exc, RemoteError) else "database"
    return JSONResponse(
        {"detail": f"{service} unavailable, retry later"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": _retry_after(request)},
    )


def install(app: FastAPI) -> None:
    """Register the exception handlers on `app`."""
    for kind, _code in _STATUS:
        app.add_exception_handler(kind, _client_error)
    app.add_exception_handler(TooManyAttemptsError, _throttled)  # the most specific handler wins
    app.add_exception_handler(ClientDisconnect, _disconnected)
    app.add_exception_handler(DataError, _bad_value)  # last line of defence; schemas bound values first
    for outage in (RemoteError, OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(outage, _unavailable)
