"""Bringing a process up: resolve embedded engines, migrate, open the backends, and the TUF keys: a development
key set for the zero-configuration server, none of it in production."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, text
from tuf.api.metadata import Root, Targets

from server import embedded
from server.backends import Backends, open_backends, open_mlflow
from server.config import Settings
from server.db.engine import create_db_engine
from server.db.migrate import upgrade
from server.db.models import ApiToken, Role
from server.errors import InputError, OnlineKeyError
from server.identity import create_api_token
from server.registry import offline, repository

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
    """Resolve, migrate and open everything a process needs; production settings refuse development keys."""
    refuse_development_keys(settings)
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


def _key_directory(settings: Settings) -> Path:
    """Where the server looks for its online keys when no setting names them (and where a development set goes)."""
    return Path(settings.data_dir) / "tuf"


def refuse_development_keys(settings: Settings) -> None:
    """`InputError` when production settings would sign with the online keys of a development key set."""
    if not settings.production:
        return
    files = (settings.tuf_snapshot_key_file, settings.tuf_timestamp_key_file)
    directories = {_key_directory(settings), *(path.parent for path in files if path is not None)}
    for directory in directories:
        development = offline.development_keyids(directory)
        for role in offline.ONLINE_ROLES:
            try:
                keyid = repository.online_signer(settings, role).public_key.keyid
            except OnlineKeyError:
                continue  # no key: signing fails as it always did
            if keyid in development:
                raise InputError(f"the {role} key is a development key (from {directory.resolve()}), refused in "
                                 "production: make real keys with `tinysphere keys init` (docs/registry.md)")


def development_keys(settings: Settings, backends: Backends) -> None:
    """Zero configuration: without TUF keys, make a development key set in the data directory and install its
    root (and an empty targets version 1), so devices can fetch `1.root.json` right away; warn on every start."""
    configured = (settings.tuf_snapshot_key, settings.tuf_snapshot_key_file, settings.tuf_timestamp_key,
                  settings.tuf_timestamp_key_file)
    if not settings.embedded or any(value is not None for value in configured):
        return
    directory = _key_directory(settings)
    if not any((directory / f"{role}.key").exists() for role in offline.ONLINE_ROLES):
        with backends.sessions() as session:
            if repository.latest(session, Root.type) is not None:
                return  # a root for other keys: the operator's (its missing online keys are reported when signing)
        offline.init_development(directory)
    if not offline.development_keyids(directory):
        return
    logger.warning("DEVELOPMENT TUF KEYS in %s (root and targets keys included): anyone holding that directory "
                   "can sign updates for the fleet. Fine for trying things out; for a real fleet make offline "
                   "keys with `tinysphere keys init` (docs/registry.md). Production settings refuse these keys.",
                   directory.resolve())
    with backends.sessions() as session:
        repository.lock(session)
        if repository.latest(session, Root.type) is None:
            targets = None if repository.latest(session, Targets.type) else offline.empty_targets(directory)
            repository.install_root(session, settings, (directory / "1.root.json").read_bytes(), targets)
        session.commit()
