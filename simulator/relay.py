"""A TCP relay between the simulated devices and the server that can cut the network on demand."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import urllib.parse


class Relay:
    """Listens on 127.0.0.1:<port> and forwards to the server; `cut()` drops every connection until `restore()`."""

    def __init__(self, server_url: str) -> None:
        parsed = urllib.parse.urlsplit(server_url)
        if parsed.scheme != "http" or parsed.hostname is None:
            raise ValueError("network faults need a plain http:// server URL")
        self.upstream = (parsed.hostname, parsed.port or 80)
        self.offline = False
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Relay:
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop).result(10)
        self.port = server.sockets[0].getsockname()[1]
        return self

    def cut(self) -> None:
        self.offline = True
        self._loop.call_soon_threadsafe(self._close_all)

    def restore(self) -> None:
        self.offline = False

    def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.offline:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while not self.offline and (chunk := await reader.read(65536)):
                writer.write(chunk)
                await writer.drain()
        writer.close()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._close_all)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
