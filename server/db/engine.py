"""Engines and sessions for PostgreSQL through psycopg 3; one dialect, no SQLite fallback."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
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
    return create_engine(
        sqlalchemy_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=settings.db_connect_timeout_s,
        pool_recycle=1800,
        connect_args={"connect_timeout": settings.db_connect_timeout_s, "options": options},
    )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (handlers return them)."""
    return sessionmaker(engine, expire_on_commit=False)
