"""Bringing a process up: resolve embedded engines, migrate, open the backends."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, text

from server import embedded
from server.backends import Backends, open_backends, open_mlflow
from server.config import Settings
from server.db.engine import create_db_engine
from server.db.migrate import upgrade
from server.db.models import ApiToken, Role
from server.identity import create_api_token

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    """Where the database and MLflow are, after resolving the embedded defaults."""

    database_url: str
    mlflow_tracking_uri: str | None
    mlflow_artifact_root: str | None


def resolve(settings: Settings) -> Endpoints:
    """Use the configured engines; start the embedded PostgreSQL for what is not configured."""
    if settings.database_url is not None:
        if settings.mlflow_tracking_uri is None:
            logger.warning("TINYSPHERE_MLFLOW_TRACKING_URI is not set: imports will not be recorded in MLflow")
        return Endpoints(settings.database_url, settings.mlflow_tracking_uri, None)
    engines = embedded.start(Path(settings.data_dir))
    mlflow_uri = settings.mlflow_tracking_uri or engines.mlflow_tracking_uri
    artifacts = None if settings.mlflow_tracking_uri else engines.mlflow_artifact_root
    return Endpoints(engines.database_url, mlflow_uri, artifacts)


def migrate(database_url: str, settings: Settings) -> None:
    """Apply pending migrations."""
    engine = create_db_engine(database_url, settings)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def prepare(settings: Settings, *, with_mlflow: bool) -> Backends:
    """Resolve, migrate and open everything a process needs."""
    endpoints = resolve(settings)
    migrate(endpoints.database_url, settings)
    mlflow = None
    if with_mlflow and endpoints.mlflow_tracking_uri:
        mlflow = open_mlflow(settings, endpoints.mlflow_tracking_uri, endpoints.mlflow_artifact_root)
    return open_backends(settings, endpoints.database_url, mlflow=mlflow)


FIRST_ADMIN_LOCK_ID = 0x7469_6E79_0001  # "tiny" + 1: the first-start admin token


def first_admin_token(backends: Backends) -> str | None:
    """Create an admin token if no operator token exists yet; returns it (shown once).

    Replicas starting together serialise on a transaction-level advisory lock, so exactly one prints it.
    """
    with backends.sessions() as session:
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": FIRST_ADMIN_LOCK_ID})
        if session.scalar(select(func.count()).select_from(ApiToken)):
            return None
        token = create_api_token(session, "admin (first start)", Role.admin)
        session.commit()
        return token
