"""Engines and sessions for PostgreSQL through psycopg 3; one dialect, no SQLite fallback.

Beside each engine, a few async connections for the heartbeat, which runs on the event loop."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings


def sqlalchemy_url(url: str, driver: str = "psycopg") -> str:
    """Return `url` with the given PostgreSQL driver (`postgresql://` is accepted as input)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"only PostgreSQL is supported, not {parsed.get_backend_name()!r}")
    return parsed.set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)


def create_db_engine(url: str, settings: Settings) -> Engine:
    """An engine with bounded connect and statement times, so an outage fails fast."""
    options = f"-c statement_timeout={settings.db_statement_timeout_ms}"
    engine = create_engine(
        sqlalchemy_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=settings.db_connect_timeout_s,
        pool_recycle=1800,
        connect_args={"connect_timeout": settings.db_connect_timeout_s, "options": options},
    )
    conninfo = sqlalchemy_url(url).replace("postgresql+psycopg://", "postgresql://", 1)
    pool = AsyncConnections(conninfo, settings.db_pool_size, settings.db_connect_timeout_s, options)
    _ASYNC[engine] = pool
    event.listen(engine, "engine_disposed", lambda _engine: pool.close())
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (handlers return them)."""
    return sessionmaker(engine, expire_on_commit=False)


class AsyncConnections:
    """A few autocommit psycopg connections for the statements a hot route runs on the event loop itself.

    Not tied to one event loop: a connection waits on whichever loop runs the statement, and the bound on open
    connections is a plain counter. Errors come out as SQLAlchemy's, so the API maps them as for any session.
    """

    def __init__(self, conninfo: str, size: int, timeout_s: float, options: str) -> None:
        self._conninfo = conninfo
        self._size = size
        self._timeout_s = timeout_s
        self._options = options
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._open = 0

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """An idle connection, or a new one while fewer than `size` are open; waits up to the timeout else."""
        conn = await self._take()
        try:
            yield conn
        except psycopg.Error as exc:
            raise _as_sqlalchemy(exc) from exc
        finally:
            self._give_back(conn)

    def close(self) -> None:
        """Close the idle connections (connections in use close when given back)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.pgconn.finish()  # synchronous: the engine's dispose may run outside any event loop
            self._open -= 1

    async def _take(self) -> psycopg.AsyncConnection[Any]:
        deadline = time.monotonic() + self._timeout_s
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
                self._open -= 1
            if self._open < self._size:
                self._open += 1
                try:
                    return await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True, connect_timeout=max(1, int(self._timeout_s)),
                        options=self._options)
                except psycopg.Error as exc:
                    self._open -= 1
                    raise _as_sqlalchemy(exc) from exc
            if time.monotonic() >= deadline:
                raise PoolTimeoutError(f"no database connection free within {self._timeout_s} s")
            await asyncio.sleep(0.001)

    def _give_back(self, conn: psycopg.AsyncConnection[Any]) -> None:
        healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        if healthy and len(self._idle) < self._size:
            self._idle.append(conn)
            return
        self._open -= 1
        if not conn.closed:
            conn.pgconn.finish()


_ASYNC: weakref.WeakKeyDictionary[Engine, AsyncConnections] = weakref.WeakKeyDictionary()


def async_connections(engine: Engine) -> AsyncConnections:
    """The async connections that go with `engine` (same database and limits; closed by its `dispose()`)."""
    return _ASYNC[engine]


def _as_sqlalchemy(exc: psycopg.Error) -> Exception:
    """SQLAlchemy's exception for a psycopg error, as a session would raise it."""
    for theirs, ours in ((psycopg.OperationalError, OperationalError), (psycopg.InterfaceError, InterfaceError),
                         (psycopg.DataError, DataError)):
        if isinstance(exc, theirs):
            return ours(None, None, exc)
    return DBAPIError(None, None, exc)
