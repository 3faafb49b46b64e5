"""The engines one process talks to, opened once from `Settings`: database, object store, MLflow."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.db.engine import create_db_engine, session_factory
from server.storage import ObjectStore
from server.storage.local import LocalStore
from server.storage.s3 import S3Store
from server.tracking.bridge import MlflowBridge, configure_http

logger = logging.getLogger(__name__)


@dataclass
class Backends:
    """Everything stateful a request handler or the worker may touch."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ObjectStore
    mlflow: MlflowBridge | None = None

    def close(self) -> None:
        """Send what waits for MLflow and release pooled connections."""
        if self.mlflow is not None:
            self.mlflow.close()
        self.engine.dispose()


def open_store(settings: Settings) -> ObjectStore:
    """S3 when an endpoint is configured, else a directory under the data dir."""
    if settings.s3_endpoint is None:
        return LocalStore(Path(settings.data_dir) / "objects")
    return S3Store(
        settings.s3_endpoint,
        settings.s3_access_key,
        settings.s3_secret_key.get_secret_value(),
        region=settings.s3_region,
        timeout_s=settings.s3_timeout_s,
        bucket_prefix=settings.bucket_prefix,
        public_endpoint=settings.s3_public_endpoint,
    )


def open_mlflow(settings: Settings, tracking_uri: str, artifact_root: str | None = None) -> MlflowBridge:
    """An MLflow bridge with bounded HTTP timeouts."""
    configure_http(settings.mlflow_timeout_s, settings.mlflow_max_retries)
    return MlflowBridge(tracking_uri, artifact_root)


def open_backends(
    settings: Settings, database_url: str, store: ObjectStore | None = None, mlflow: MlflowBridge | None = None
) -> Backends:
    """Open the database engine and, unless given, the object store."""
    engine = create_db_engine(database_url, settings)
    return Backends(settings, engine, session_factory(engine), store or open_store(settings), mlflow)
