"""A body-size limit for every route but the package and bundle uploads, which enforce their own.

FastAPI reads JSON bodies whole; without this a single request could make the API buffer anything.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.errors import ProblemType, problem_bytes
from server.schemas.problems import MEDIA_TYPE

UPLOAD_PREFIXES = ("/api/v1/sync/packages/", "/api/v1/registry/uploads/")


class BodyLimit:
    """ASGI middleware: 413 for bodies over `limit` bytes (declared or counted while streaming)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(UPLOAD_PREFIXES):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, scope, self.limit)
            return
        seen = 0
        rejected = False

        async def counted() -> Message:
            nonlocal seen, rejected
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit and not rejected:
                rejected = True  # answer now; the app sees a disconnect and its answer is dropped
                await _too_large(send, scope, self.limit)
                return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not rejected:
                await send(message)

        await self.app(scope, counted, guarded)


async def _too_large(send: Send, scope: Scope, limit: int) -> None:
    body = problem_bytes(ProblemType.too_large, f"request body is larger than {limit} bytes", str(scope["path"]))
    headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
