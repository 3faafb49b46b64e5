"""The async connections beside an engine: reused, bounded, errors as SQLAlchemy's, closed by `dispose()`."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from server.config import Settings
from server.db.engine import AsyncConnections, async_connections, create_db_engine


def test_connections_are_reused_bounded_and_closed_by_dispose(database_url: str) -> None:
    engine = create_db_engine(database_url, Settings(environment="development", db_pool_size=1,
                                                     db_connect_timeout_s=1))
    pool = async_connections(engine)

    async def scenario() -> None:
        async with pool.connection() as first:
            assert (await (await first.execute("SELECT 1")).fetchone()) == (1,)
            with pytest.raises(PoolTimeoutError):  # the only connection is taken
                async with pool.connection():
                    pass
        async with pool.connection() as again:
            assert again is first and again.autocommit
        with pytest.raises(OperationalError):  # a server-side failure comes out as a session's would
            async with pool.connection() as conn:
                await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        async with pool.connection() as fresh:  # the broken connection was dropped, a new one opened
            assert fresh is not first and not fresh.closed
        engine.dispose()
        assert fresh.closed

    asyncio.run(scenario())


def test_a_refused_connection_is_an_operational_error() -> None:
    pool = AsyncConnections("postgresql://nobody@127.0.0.1:1/none", 2, 1, "")

    async def scenario() -> None:
        with pytest.raises(OperationalError):
            async with pool.connection():
                pass
        assert pool._open == 0  # the failed attempt does not count against the bound

    asyncio.run(scenario())
