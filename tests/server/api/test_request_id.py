"""Every answer carries an `X-Request-ID`, and so does every log line written while answering it."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import threading
import urllib.request
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.api.request_id import RequestIdFilter
from server.app import create_app
from server.backends import Backends
from server.cli import _log_formatter
from tests.server.utils import auth
from tests.utils.wait import wait_until

GENERATED = re.compile(r"[0-9a-f]{32}")
logger = logging.getLogger("tests.request_id")


def _failing_app(backends: Backends) -> FastAPI:
    app = create_app(backends)

    async def boom() -> None:
        logger.error("about to fail")
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)
    return app


def test_an_answer_gets_a_new_id_each_time(client: TestClient, viewer_token: str) -> None:
    first, second = client.get("/healthz"), client.get("/api/v1/devices", headers=auth(viewer_token))
    assert first.status_code == 200 and second.status_code == 200
    ids = {first.headers["X-Request-ID"], second.headers["X-Request-ID"]}
    assert len(ids) == 2 and all(GENERATED.fullmatch(value) for value in ids), ids


def test_a_refused_request_gets_one_too(client: TestClient) -> None:
    response = client.get("/api/v1/devices")
    assert response.status_code == 401 and GENERATED.fullmatch(response.headers["X-Request-ID"])


def test_a_clients_id_is_kept(client: TestClient) -> None:
    given = "edge-proxy:7f3a.19_b-2"
    assert client.get("/healthz", headers={"X-Request-ID": given}).headers["X-Request-ID"] == given


@pytest.mark.parametrize("given", ["x" * 129, "two words", "new\\nline", "naïve", "", "{injected}"],
                         ids=["too-long", "space", "backslash", "non-ascii", "empty", "braces"])
def test_a_clients_id_that_could_garble_the_logs_is_replaced(client: TestClient, given: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": given.encode()})
    assert response.status_code == 200 and GENERATED.fullmatch(response.headers["X-Request-ID"]), response.headers


def test_a_500_names_its_id_in_the_header_the_body_and_the_log(backends: Backends,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    with TestClient(_failing_app(backends), raise_server_exceptions=False) as failing, \
            caplog.at_level(logging.ERROR, logger="tests.request_id"):
        response = failing.get("/boom", headers={"X-Request-ID": "ticket-4711"})
    assert response.status_code == 500 and response.headers["X-Request-ID"] == "ticket-4711"
    body = response.json()
    assert body["request_id"] == "ticket-4711" and "a bug" not in response.text, body
    logged = [record for record in caplog.records if record.getMessage() == "about to fail"]
    assert [getattr(record, "request_id", None) for record in logged] == ["ticket-4711"]


@pytest.fixture
def served(backends: Backends) -> Iterator[tuple[str, io.StringIO]]:
    """The app under uvicorn over loopback, its access log on, logging JSON lines as `tinysphere serve` does."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(_log_formatter("json"))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    # as in a fresh `tinysphere serve --log-format json`: uvicorn's loggers propagate to the root's handler
    # (another test's uvicorn may have configured them with handlers of their own)
    saved = {}
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        log = logging.getLogger(name)
        saved[name] = (log.handlers[:], log.propagate, log.level, log.disabled)
        log.handlers, log.propagate, log.disabled = [], True, False
        log.setLevel(logging.INFO)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(backends), log_level="info", access_log=True,
                                           log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 10, "uvicorn to start", interval=0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", out
    finally:
        server.should_exit = True
        thread.join(10)
        root.removeHandler(handler)
        for name, (handlers, propagate, level, disabled) in saved.items():
            log = logging.getLogger(name)
            log.handlers, log.propagate, log.disabled = handlers, propagate, disabled
            log.setLevel(level)


def test_the_access_log_line_carries_the_answers_id(served: tuple[str, io.StringIO]) -> None:
    base, out = served
    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
        request_id = response.headers["X-Request-ID"]
    assert GENERATED.fullmatch(request_id)

    def access_lines() -> list[dict[str, object]]:
        lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("name") == "uvicorn.access" and "/healthz" in str(line)]

    wait_until(access_lines, 10, "the access log line", interval=0.02)
    assert [line.get("request_id") for line in access_lines()] == [request_id]
    startup = [json.loads(line) for line in out.getvalue().splitlines() if '"uvicorn.error"' in line]
    assert startup and all("request_id" not in line for line in startup)  # no request, no id
