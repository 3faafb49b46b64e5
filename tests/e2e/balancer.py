"""A reverse proxy for the stack test, a stand-in for Caddy in compose.server.yml (there is no Docker here).

One `Site` listens on 127.0.0.1 and sends each request to the next of its upstreams, round robin (Caddy's
`lb_policy round_robin`), on a fresh upstream connection, adding X-Forwarded-For and X-Forwarded-Proto as
Caddy does. A site may rewrite the Host header (`header_up Host`) and require HTTP basic auth
(`basic_auth`). It counts every answer by upstream and status, and keeps the request line and the start of
the body of every 5xx, so a test can say which replica failed and how.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import threading
from collections import Counter
from dataclasses import dataclass

from tests.e2e.proxy import LoopbackServer, read_message


@dataclass(frozen=True)
class ServerError:
    """A 5xx answer as the proxy passed it on."""

    upstream: int
    request: str  # method and path
    status: int
    body: str  # the first 300 characters


def _head_and_body(message: bytes) -> tuple[list[str], bytes]:
    head, _, body = message.partition(b"\r\n\r\n")
    return head.decode("latin-1").split("\r\n"), body


def _header(lines: list[str], name: str) -> str | None:
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return None


class Site(LoopbackServer):
    """A listener on 127.0.0.1 (port chosen) in front of `upstreams` (loopback ports); its own thread."""

    def __init__(self, upstreams: list[int], *, host_header: str | None = None,
                 basic_auth: tuple[str, str] | None = None) -> None:
        if not upstreams:
            raise ValueError("a site needs at least one upstream")
        super().__init__("stack-proxy", read_limit=2**20)
        self.upstreams = list(upstreams)
        self.host_header = host_header
        self.credentials = (base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
                            if basic_auth else None)
        self.answers: Counter[tuple[int, int]] = Counter()  # (upstream port, status) -> count
        self.refused = 0  # requests answered 401 by the site itself (no or wrong credentials)
        self.unreachable = 0  # requests whose upstream closed or refused the connection (answered 502)
        self.errors: list[ServerError] = []
        self._next = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Site:
        self._listen()
        return self

    def split(self) -> dict[int, int]:
        """Answers per upstream port."""
        with self._lock:
            per: Counter[int] = Counter()
            for (upstream, _), count in self.answers.items():
                per[upstream] += count
            return {port: per[port] for port in self.upstreams}

    def statuses(self) -> dict[int, int]:
        """Answers per status code, over every upstream."""
        with self._lock:
            per: Counter[int] = Counter()
            for (_, status), count in self.answers.items():
                per[status] += count
            return dict(sorted(per.items()))

    def _pick(self) -> int:
        with self._lock:
            upstream = self.upstreams[self._next % len(self.upstreams)]
            self._next += 1
            return upstream

    def _authorized(self, lines: list[str]) -> bool:
        if self.credentials is None:
            return True
        given = _header(lines, "authorization") or ""
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "basic" and hmac.compare_digest(value.strip(), self.credentials)

    def _rewrite(self, lines: list[str], body: bytes) -> bytes:
        kept = [line for line in lines[1:] if line.partition(":")[0].strip().lower() not in
                ({"host"} if self.host_header else set()) | {"x-forwarded-for", "x-forwarded-proto"}]
        added = [f"Host: {self.host_header}"] if self.host_header else []
        added += ["X-Forwarded-For: 127.0.0.1", "X-Forwarded-Proto: http"]
        return "\r\n".join([lines[0], *kept, *added]).encode("latin-1") + b"\r\n\r\n" + body

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_message(reader)
                if not request:
                    return
                lines, body = _head_and_body(request)
                method, path = (lines[0].split(" ") + ["", ""])[:2]
                if not self._authorized(lines):
                    with self._lock:
                        self.refused += 1
                    writer.write(b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="restricted"\r\n'
                                 b"Content-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                response = await self._forward(self._pick(), method, path, self._rewrite(lines, body))
                writer.write(response)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return
        except asyncio.CancelledError:  # the site is closing: end quietly (asyncio logs a cancelled handler)
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _forward(self, upstream: int, method: str, path: str, request: bytes) -> bytes:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream, limit=2**20)
        except OSError:
            response = b""
        else:
            try:
                up_writer.write(request)
                await up_writer.drain()
                response = await read_message(up_reader, answering=method)
            except (OSError, asyncio.IncompleteReadError):
                response = b""
            finally:
                up_writer.close()
                with contextlib.suppress(Exception):
                    await up_writer.wait_closed()
        if not response:
            with self._lock:
                self.unreachable += 1
                self.errors.append(ServerError(upstream, f"{method} {path}", 502, "upstream unreachable"))
            return b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
        lines, body = _head_and_body(response)
        status = int(lines[0].split(" ", 2)[1])
        with self._lock:
            self.answers[(upstream, status)] += 1
            if status >= 500:
                self.errors.append(ServerError(upstream, f"{method} {path}", status,
                                               body[:300].decode("utf-8", "replace")))
        return response
