"""Fixtures of the sync tests: a contract server on loopback, an outbox, fast retry settings."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from device.outbox import Outbox, OutboxSettings
from device.sync import ClientSettings, PackSettings, RetryPolicy, SyncSettings
from tests.device.sync.contract_server import TOKEN, ContractState, build_app

FAST_RETRY = RetryPolicy(attempts=4, initial_s=0.01, max_wait_s=0.05, max_total_s=30)


@pytest.fixture
def contract() -> ContractState:
    return ContractState()


@pytest.fixture
def server_url(contract: ContractState) -> Iterator[str]:
    """The contract server on its own thread and event loop, so tests may use `asyncio.run` or threads."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(build_app(contract))

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return int(runner.addresses[0][1])

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db", OutboxSettings(linger_s=0))
    yield box
    box.close()


def sync_settings(url: str, tmp_path: Path, **pack: Any) -> SyncSettings:
    return SyncSettings(
        server_url=url, interval_s=0.05, heartbeat_interval_s=0.05, identity_path=str(tmp_path / "identity.json"),
        enrollment_token=TOKEN, client=ClientSettings(connect_timeout_s=2, read_timeout_s=5, retry=FAST_RETRY),
        pack=PackSettings(**pack),
    )
