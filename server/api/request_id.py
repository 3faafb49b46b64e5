"""A request id on every response and on every log line written while answering it.

A client (or a proxy in front of the server) may send `X-Request-ID`; an id of up to 128 letters, digits and
`._:-` is kept, anything else is replaced by a new one (a random 32-hex id), so a client's header can never put
text of its choosing into the logs. The id goes back in the response's `X-Request-ID`, in the body of a 500
answer, and, through `RequestIdFilter` on the log handler, into every record logged while the request is
answered (the JSON log format shows it as `request_id`; uvicorn's access line included). An operator given the
id of a failed request finds its log lines with one search.

The id lives in a context variable: uvicorn answers each request in its own task, whose context is a copy, so
the value set here is never seen by another request and needs no reset.
"""

from __future__ import annotations

import logging
import re
import secrets
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI's log set-up imports this module; it needs no web framework loaded
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_HEADER_KEY = HEADER.lower().encode()
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
current: ContextVar[str | None] = ContextVar("request_id", default=None)


def _accepted(value: bytes) -> str | None:
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if _VALID.fullmatch(text) else None


class RequestId:
    """ASGI middleware: sets `current` for the request and adds `X-Request-ID` to its response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value for key, value in scope["headers"] if key == _HEADER_KEY), None)
        request_id = (_accepted(given) if given is not None else None) or secrets.token_hex(16)
        current.set(request_id)

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (_HEADER_KEY, request_id.encode())]
            await send(message)

        await self.app(scope, receive, with_id)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record logged while a request is answered (records of no request get none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current.get()
        if request_id is not None:
            record.request_id = request_id
        return True
