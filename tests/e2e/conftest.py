"""End-to-end fixtures: the real server process on PostgreSQL + the S3 API, the fault proxy in front
of it, and device processes behind it. The per-fault accounting is printed at the end of the run.

The services come from the `TINYMLOPS_TEST_*` variables (`scripts/services up`), or are started here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.e2e.device_run import Accounting, Device
from tests.e2e.fleet import ROLLOUT_DB, RegistryServer
from tests.e2e.proxy import FaultProxy
from tests.e2e.server_proc import ServerDatabase, ServerProcess
from tests.server import services
from tests.utils.databases import fresh_database

ENV_VARS = ("TINYMLOPS_TEST_DATABASE_URL", "TINYMLOPS_TEST_S3_ENDPOINT")
RESULTS: list[Accounting] = []


@pytest.fixture(scope="session")
def e2e_env() -> Iterator[dict[str, str]]:
    with services.environment(ENV_VARS) as env:
        yield env


@pytest.fixture(scope="session")
def e2e_database(e2e_env: dict[str, str]) -> Iterator[str]:
    admin = e2e_env["TINYMLOPS_TEST_DATABASE_URL"]
    name = f"tinysphere_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def server(e2e_env: dict[str, str], e2e_database: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    """`tinysphere serve --worker`, production settings, short job lease so a killed import is retried soon.

    MLflow is left out: these tests are about the device-server handshake, not experiment tracking.
    """
    env = {
        "TINYSPHERE_ENVIRONMENT": "production",
        "TINYSPHERE_DATABASE_URL": e2e_database,
        "TINYSPHERE_S3_ENDPOINT": e2e_env["TINYMLOPS_TEST_S3_ENDPOINT"],
        "TINYSPHERE_S3_ACCESS_KEY": e2e_env["TINYMLOPS_TEST_S3_ACCESS_KEY"],
        "TINYSPHERE_S3_SECRET_KEY": e2e_env["TINYMLOPS_TEST_S3_SECRET_KEY"],
        "TINYSPHERE_S3_TIMEOUT_S": "5",
        "TINYSPHERE_BUCKET_PREFIX": f"e2e{uuid.uuid4().hex[:8]}-",
        "TINYSPHERE_JOB_LEASE_S": "5",
        "TINYSPHERE_JOB_BACKOFF_BASE_S": "0.2",
        "TINYSPHERE_JOB_BACKOFF_MAX_S": "1",
        "TINYSPHERE_WORKER_POLL_S": "0.2",
        "TINYSPHERE_RETRY_AFTER_S": "1",
    }
    process = ServerProcess(env, tmp_path_factory.mktemp("server") / "server.log").start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def server_db(server: ServerProcess, e2e_database: str) -> Iterator[ServerDatabase]:
    db = ServerDatabase(e2e_database)
    yield db
    db.close()


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(server.port).start()
    yield fault_proxy
    fault_proxy.close()


@pytest.fixture
def new_device(proxy: FaultProxy, server_db: ServerDatabase, tmp_path: Path) -> Iterator[Callable[[], Device]]:
    """A fresh device (own data dir, own enrollment) talking through the proxy; its processes die with the test."""
    devices: list[Device] = []

    def make() -> Device:
        workdir = tmp_path / f"device{len(devices) + 1}"
        workdir.mkdir()
        devices.append(Device(workdir, f"http://127.0.0.1:{proxy.port}", server_db.enrollment_token()))
        return devices[-1]

    yield make
    for device in devices:
        device.kill()


@pytest.fixture
def record_result() -> Callable[[Accounting], None]:
    return RESULTS.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.section("end-to-end sync accounting (per fault)")
        for result in RESULTS:
            terminalreporter.write_line(result.line())


@pytest.fixture
def registry(e2e_env: dict[str, str], tmp_path: Path) -> Iterator[RegistryServer]:
    """A signed registry server of its own (online TUF keys, root v1 pushed), on a database of its own."""
    with fresh_database(e2e_env["TINYMLOPS_TEST_DATABASE_URL"], ROLLOUT_DB) as url:
        server = RegistryServer(e2e_env, url, tmp_path / "server")
        try:
            yield server
        finally:
            server.close()
