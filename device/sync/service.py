"""`SyncService`: the sync task on a thread of its own, for the (synchronous) appliance service."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from device.errors import RemoteError, StateError
from device.outbox import Outbox
from device.sync.loop import DesiredFn, LabelsFn, StatusFn, SyncLoop
from device.sync.settings import SyncSettings

log = logging.getLogger(__name__)


class SyncService:
    """Starts a `SyncLoop` in a daemon thread with its own event loop; `close` stops it."""

    def __init__(self, outbox: Outbox, settings: SyncSettings, status: StatusFn | None = None,
                 on_labels: LabelsFn | None = None, on_desired: DesiredFn | None = None) -> None:
        self.loop = SyncLoop(outbox, settings, status, on_labels, on_desired)
        self._thread = threading.Thread(target=self._main, name="sync", daemon=True)
        self._aio: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()

    def start(self) -> SyncService:
        self._thread.start()
        self._ready.wait(10)
        return self

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._aio = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self.loop.run(self._stop)
        except Exception:
            log.exception("sync task ended unexpectedly")

    def counters(self) -> dict[str, int]:
        """The sync task's counters since start (`sync_conflicts`, ...), for the health snapshot."""
        return self.loop.counters()

    def trigger(self) -> None:
        """Start the next sync round now instead of after the interval."""
        if self._aio is not None:
            self._aio.call_soon_threadsafe(self.loop.wake.set)

    def heartbeat(self, timeout: float = 30.0) -> dict[str, Any] | None:
        """Send a heartbeat now (e.g. before shutting down); its answer, or None when it failed."""
        if self._aio is None:
            return None
        future = asyncio.run_coroutine_threadsafe(self.loop.heartbeat(), self._aio)
        try:
            return future.result(timeout)
        except (RemoteError, StateError, TimeoutError) as exc:
            log.warning("heartbeat failed: %s", exc)
            future.cancel()
            return None

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the request in progress (or at the timeout: the thread is a daemon)."""
        if self._aio is not None and self._stop is not None and not self._aio.is_closed():
            self._aio.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
