"""API replicas for tests: separate apps, engines and uvicorn servers over loopback on one fresh database,
reading one clock that the test moves."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import uvicorn

from server.api.deps import get_clock
from server.app import create_app
from server.backends import Backends, open_backends
from server.config import Settings
from server.db.models import Role
from server.identity import create_api_token
from server.startup import migrate
from server.storage.local import LocalStore
from server.ui.session import COOKIE, LOGIN_COOKIE
from tests.utils.wait import wait_until


@dataclass
class Clock:
    """Seconds since the epoch, moved only by `advance`."""

    now: float

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def _serve(backends: Backends, clock: Clock) -> Iterator[str]:
    app = create_app(backends)
    app.dependency_overrides[get_clock] = lambda: clock
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # X-Forwarded-For from loopback is trusted, as from a reverse proxy: tests choose the client's address.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", forwarded_allow_ips="127.0.0.1"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, "uvicorn to start", interval=0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class Fleet:
    """Replica base URLs, the first replica's backends (for direct queries), and tokens by role."""

    urls: list[str]
    backends: Backends
    tokens: dict[str, str]


@contextmanager
def replicas(database_url: str, settings: Settings, clock: Clock, tmp: Path, count: int = 2) -> Iterator[Fleet]:
    """`count` API replicas on `database_url` (migrated here), each with its own engine and server."""
    migrate(database_url, settings)
    with ExitStack() as stack:
        opened = []
        for index in range(count):
            backends = open_backends(settings, database_url, store=LocalStore(tmp / f"objects-{index}"))
            stack.callback(backends.close)
            opened.append(backends)
        with opened[0].sessions() as session:
            tokens = {role.value: create_api_token(session, f"replicas {role.value}", role) for role in Role}
            session.commit()
        urls = [stack.enter_context(_serve(backends, clock)) for backends in opened]
        yield Fleet(urls, opened[0], tokens)


def client(url: str, address: str = "192.0.2.10") -> httpx2.Client:
    """An HTTP client that the replica sees as coming from `address`."""
    return httpx2.Client(base_url=url, timeout=10, headers={"X-Forwarded-For": address})


def sign_in(http: httpx2.Client, token: str) -> httpx2.Response:
    """Post the dashboard's login form as a browser would (its CSRF cookie and field included)."""
    form = http.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert form.status_code == 200 and csrf, form.text[:300]
    assert LOGIN_COOKIE in http.cookies  # the jar sends it back with the form
    return http.post("/ui/login", data={"token": token, "csrf": csrf.group(1), "next": "/ui/"})


def session_cookie(response: httpx2.Response) -> str:
    """The session cookie a successful sign-in set."""
    assert response.status_code == 303, (response.status_code, response.text[:300])
    return response.cookies[COOKIE]
