"""A fault-injecting HTTP/1.1 proxy for the end-to-end tests, between the device and the real server.

It reads each request whole (head + Content-Length body), so faults apply per request, and can:
`down` (every connection closed at once: the network is gone), and for the next matching requests
`drop_request` (half the request reaches the server, then both sides are cut), `drop_response`
(the server handles the request, the device never hears back), `truncate` (half the answer),
`stall` (the answer is held for N seconds), `delay` (N seconds before forwarding), or `answer`
(a canned status with optional Retry-After, the server never sees the request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fault:
    kind: str  # drop_request | drop_response | truncate | stall | delay | answer
    seconds: float = 0.0  # stall, delay
    status: int = 503  # answer
    retry_after: str | None = None  # answer


class _Cut(Exception):
    """The proxy cut the connection on purpose."""


async def read_message(reader: asyncio.StreamReader, *, answering: str | None = None) -> bytes:
    """One HTTP/1.1 message (head + Content-Length body, or a chunked body); b"" at EOF.

    `answering`: for a response, the method of its request (an answer to HEAD, and a 1xx, 204 or 304,
    has no body whatever its headers say).
    """
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    if answering is not None:
        status = int(head.split(b" ", 2)[1])
        if answering == "HEAD" or status < 200 or status in (204, 304):
            return head
    headers = {
        k.strip().lower(): v.strip()
        for k, _, v in (line.partition(":") for line in head.decode("latin-1").split("\r\n")[1:] if line)
    }
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            chunk = await reader.readexactly(int(size_line.split(b";")[0], 16) + 2)
            body += size_line + chunk
            if size_line.strip() == b"0":
                return head + body
    return head + await reader.readexactly(int(headers.get("content-length", "0") or 0))


class LoopbackServer:
    """An asyncio server on 127.0.0.1 (port chosen) running on a thread of its own; subclasses `_handle`."""

    def __init__(self, name: str, read_limit: int = 2**16) -> None:
        self._name, self._read_limit = name, read_limit
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def _listen(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0, limit=self._read_limit), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()


class FaultProxy(LoopbackServer):
    """Listens on 127.0.0.1:`port` (chosen), forwards to `upstream_port`; runs on a thread of its own."""

    def __init__(self, upstream_port: int, path_prefix: str = "/api/v1/sync/") -> None:
        super().__init__("fault-proxy")
        self.upstream_port = upstream_port
        self.path_prefix = path_prefix  # only requests under this path get the queued faults
        self.down = False
        self.faults: list[Fault] = []
        self.injected: Counter[str] = Counter()
        self.forwarded = 0
        self._lock = threading.Lock()

    def start(self) -> FaultProxy:
        self._listen()
        return self

    def queue(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def pending(self) -> int:
        with self._lock:
            return len(self.faults)

    def _next_fault(self, request: bytes) -> Fault | None:
        path = request.split(b" ", 2)[1].decode("latin-1") if request.count(b" ") >= 2 else ""
        with self._lock:
            if self.faults and path.startswith(self.path_prefix):
                fault = self.faults.pop(0)
                self.injected[fault.kind if fault.kind != "answer" else f"answer {fault.status}"] += 1
                return fault
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while not self.down:
                request = await read_message(reader)
                if not request or self.down:
                    return
                if upstream is None:
                    upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
                await self._exchange(request, self._next_fault(request), upstream, writer)
        except (_Cut, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            for w in (writer, upstream[1] if upstream else None):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception):
                        await w.wait_closed()

    async def _exchange(self, request: bytes, fault: Fault | None,
                        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                        writer: asyncio.StreamWriter) -> None:
        kind = fault.kind if fault else ""
        if kind == "answer":
            assert fault is not None
            extra = f"Retry-After: {fault.retry_after}\r\n" if fault.retry_after else ""
            body = b'{"detail":"injected by the test proxy"}'
            writer.write(f"HTTP/1.1 {fault.status} Injected\r\nContent-Type: application/json\r\n{extra}"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
            return
        if kind == "delay":
            await asyncio.sleep(fault.seconds if fault else 0)
        up_reader, up_writer = upstream
        if kind == "drop_request":
            up_writer.write(request[: len(request) // 2])
            await up_writer.drain()
            raise _Cut
        up_writer.write(request)
        await up_writer.drain()
        response = await read_message(up_reader)
        if not response:
            raise _Cut
        self.forwarded += 1
        if kind == "drop_response":
            raise _Cut
        if kind == "stall":
            await asyncio.sleep(fault.seconds if fault else 0)
        if kind == "truncate":
            writer.write(response[: len(response) // 2])
            await writer.drain()
            raise _Cut
        writer.write(response)
        await writer.drain()
