"""Response headers that keep stored files from running as script in an operator's browser.

Every response gets `nosniff` and no referrer (middleware); stored objects additionally get a
sandboxing Content-Security-Policy and are only shown inline when they are checked images.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import images

DEFAULTS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
# An object opened in its own tab is a sandboxed document that may load nothing but itself.
OBJECT_CSP = "default-src 'none'; img-src 'self'; sandbox"


def object_headers(content_type: str) -> dict[str, str]:
    """Headers for serving a stored object of `content_type` (the type checked when it was stored)."""
    disposition = "inline" if content_type in images.CONTENT_TYPES else "attachment"
    return {**DEFAULTS, "Content-Security-Policy": OBJECT_CSP, "Content-Disposition": disposition,
            "Cache-Control": "private, no-store"}


class SecurityHeaders:
    """ASGI middleware: adds `DEFAULTS` to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in DEFAULTS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)
