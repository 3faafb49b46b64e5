"""Fixtures of the delivery tests: the real TinySphere app over loopback (only its database is needed for
enrollment), an operator token, and fresh enrollment tokens."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn

from server.app import create_app
from server.backends import Backends, open_backends
from server.config import Settings
from server.db.models import Role
from server.identity import create_api_token
from server.startup import migrate
from server.storage.local import LocalStore
from tests.server.conftest import database_url, test_env  # noqa: F401 - fixtures: one database per session
from tests.utils.wait import wait_until


@pytest.fixture(scope="session")
def enrollment_backends(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:  # noqa: F811
    """The server's backends on the session's database; objects in a directory (enrollment stores none)."""
    data_dir = tmp_path_factory.mktemp("tinysphere")
    settings = Settings(environment="production", database_url=database_url, data_dir=data_dir)
    migrate(database_url, settings)
    backends = open_backends(settings, database_url, store=LocalStore(Path(data_dir) / "objects"))
    yield backends
    backends.close()


@pytest.fixture(scope="session")
def server_url(enrollment_backends: Backends) -> Iterator[str]:
    """The real API app served by uvicorn on a loopback port, on a thread of its own."""
    config = uvicorn.Config(create_app(enrollment_backends), host="127.0.0.1", port=0, log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="tinysphere", daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, "uvicorn to start", interval=0.025)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="session")
def operator(enrollment_backends: Backends) -> str:
    with enrollment_backends.sessions() as session:
        token = create_api_token(session, "delivery tests", Role.operator)
        session.commit()
    return token


@pytest.fixture
def new_enrollment_token(server_url: str, operator: str) -> Callable[..., str]:
    """Make a one-time enrollment token through the API, as an operator would."""

    def make(ttl_s: int = 3600, tags: list[str] | None = None) -> str:
        body = json.dumps({"ttl_s": ttl_s, "tags": tags or []}).encode()
        request = urllib.request.Request(f"{server_url}/api/v1/enrollment-tokens", data=body, method="POST",
                                         headers={"Authorization": f"Bearer {operator}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
            return str(json.loads(response.read())["token"])

    return make

