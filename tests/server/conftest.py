"""Server test fixtures: one database per session, one app client per module, real services.

PostgreSQL, the S3 API and MLflow come from the `TINYMLOPS_TEST_*` variables that
`scripts/services up` prints; when they are missing, this file starts the services itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from server.app import create_app
from server.backends import Backends, open_backends, open_mlflow
from server.config import Settings
from server.db.engine import create_db_engine
from server.db.models import Role
from server.identity import create_api_token
from server.startup import migrate
from server.worker.runner import Worker
from tests.server import services

ENV_VARS = ("TINYMLOPS_TEST_DATABASE_URL", "TINYMLOPS_TEST_S3_ENDPOINT", "TINYMLOPS_TEST_MLFLOW_URI")


@pytest.fixture(scope="session")
def test_env() -> Iterator[dict[str, str]]:
    """The service endpoints; starts what is missing and stops only that afterwards."""
    with services.environment(ENV_VARS) as env:
        yield env


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, connect_timeout=10)


@pytest.fixture(scope="session")
def database_url(test_env: dict[str, str]) -> Iterator[str]:
    """A fresh, migrated database for this session, dropped at the end."""
    admin = test_env["TINYMLOPS_TEST_DATABASE_URL"]
    name = f"tinysphere_test_{uuid.uuid4().hex[:10]}"
    with _admin(admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    yield url
    with _admin(admin) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def scratch_database_url(test_env: dict[str, str]) -> Iterator[str]:
    """An empty database of its own (not migrated), dropped afterwards."""
    admin = test_env["TINYMLOPS_TEST_DATABASE_URL"]
    name = f"tinysphere_scratch_{uuid.uuid4().hex[:8]}"
    with _admin(admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    with _admin(admin) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def scratch_engine(scratch_database_url: str) -> Iterator[Engine]:
    """An engine on `scratch_database_url`."""
    engine = create_db_engine(scratch_database_url, Settings(environment="development"))
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def settings(test_env: dict[str, str], database_url: str) -> Settings:
    """Production rules (no development leniency), small limits so bad input is cheap to make."""
    return Settings(
        environment="production",
        database_url=database_url,
        s3_endpoint=test_env["TINYMLOPS_TEST_S3_ENDPOINT"],
        s3_access_key=test_env["TINYMLOPS_TEST_S3_ACCESS_KEY"],
        s3_secret_key=test_env["TINYMLOPS_TEST_S3_SECRET_KEY"],  # type: ignore[arg-type]
        s3_timeout_s=5,
        bucket_prefix=f"t{uuid.uuid4().hex[:8]}-",
        mlflow_tracking_uri=test_env["TINYMLOPS_TEST_MLFLOW_URI"],
        mlflow_timeout_s=5,
        mlflow_max_retries=0,
        max_package_bytes=2 * 2**20,
        max_unpacked_bytes=4 * 2**20,
        max_package_members=200,
        job_max_attempts=3,
        job_backoff_base_s=0,
        job_backoff_max_s=0,
        retry_after_s=7,
        # Every module's TestClient is one client address ("testclient") in one database; the credential
        # limits have their own tests (test_ratelimit.py) with their own settings.
        auth_failures_per_address=10_000,
        auth_failures_per_credential=10_000,
    )


@pytest.fixture(scope="session")
def backends(settings: Settings, database_url: str) -> Iterator[Backends]:
    migrate(database_url, settings)
    assert settings.mlflow_tracking_uri
    opened = open_backends(settings, database_url, mlflow=open_mlflow(settings, settings.mlflow_tracking_uri))
    opened.store.ensure_buckets()
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def client(backends: Backends) -> Iterator[TestClient]:
    with TestClient(create_app(backends)) as test_client:
        yield test_client


@pytest.fixture
def worker(backends: Backends) -> Worker:
    return Worker(backends)


def _token(backends: Backends, role: Role) -> str:
    with backends.sessions() as session:
        token = create_api_token(session, f"test {role.value}", role)
        session.commit()
    return token


@pytest.fixture(scope="session")
def admin_token(backends: Backends) -> str:
    return _token(backends, Role.admin)


@pytest.fixture(scope="session")
def operator_token(backends: Backends) -> str:
    return _token(backends, Role.operator)


@pytest.fixture(scope="session")
def viewer_token(backends: Backends) -> str:
    return _token(backends, Role.viewer)
