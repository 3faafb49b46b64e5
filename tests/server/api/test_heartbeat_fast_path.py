"""The heartbeat's fast path: accepted heartbeats answered without the route, everything else left to it intact."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, func, select
from starlette.types import Message, Receive, Scope, Send

from server.api.deps import get_clock
from server.api.routes import heartbeat
from server.backends import Backends
from server.db.models import CredentialFailure, Device
from server.ratelimit import CredentialLimits, Kind
from tests.server.utils import EnrolledDevice, auth, enroll

PATH = "/api/v1/devices/{device_id}/heartbeat"
ADDRESS = "203.0.113.9"


@pytest.fixture(scope="module")
def device(client: TestClient, operator_token: str) -> EnrolledDevice:
    return enroll(client, operator_token)


@dataclass
class Outcome:
    """What came out of one request through `FastPath`: its answer, and what the app behind it saw."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    route: Any = None
    passed_on: bool = False
    app_body: bytes = b""  # the body the app behind read


def _through(client: TestClient, device_id: str, body: bytes | list[bytes], method: str = "POST",
             headers: dict[str, str] | None = None, path: str | None = None) -> Outcome:
    """One request through a `FastPath` for `client`'s app, in front of an app that reads the body and answers 418."""
    outcome = Outcome()

    async def behind(scope: Scope, receive: Receive, send: Send) -> None:
        outcome.passed_on = True
        while True:
            message = await receive()
            outcome.app_body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    chunks = [body] if isinstance(body, bytes) else body
    messages = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
                for i, chunk in enumerate(chunks)]

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            outcome.status = message["status"]
            outcome.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            outcome.body += message.get("body", b"")

    sent = {"content-type": "application/json", **{k.lower(): v for k, v in (headers or {}).items()}}
    scope = {"type": "http", "method": method, "path": path or PATH.format(device_id=device_id), "root_path": "",
             "headers": [(k.encode(), v.encode()) for k, v in sent.items()], "client": (ADDRESS, 40000),
             "query_string": b""}
    fast = heartbeat.FastPath(behind, api=client.app, path=PATH)  # type: ignore[arg-type]
    asyncio.run(fast(scope, receive, send))
    outcome.route = scope.get("route")
    return outcome


def _beat(**report: Any) -> bytes:
    return json.dumps(report).encode()


def _device(backends: Backends, device_id: str) -> Device:
    with backends.sessions() as session:
        found = session.get(Device, device_id)
        assert found is not None
        return found


def _failures(backends: Backends) -> int:
    with backends.sessions() as session:
        return int(session.scalar(select(func.coalesce(func.sum(CredentialFailure.failures), 0))) or 0)


def test_an_accepted_heartbeat_is_answered_and_recorded_without_the_route(
        client: TestClient, device: EnrolledDevice, backends: Backends) -> None:
    outcome = _through(client, device.device_id, _beat(outbox_depth=41, update_state="IDLE", health={"fps": 4.5}),
                       headers=device.headers)
    assert not outcome.passed_on
    assert outcome.status == 200 and outcome.headers == {"content-length": str(len(outcome.body)),
                                                         "content-type": "application/json"}
    assert json.loads(outcome.body) == {"desired": {"bundle_version": None, "model": None, "target": None},
                                        "labels": []}
    assert isinstance(outcome.route, APIRoute) and outcome.route.endpoint is heartbeat.heartbeat  # as routing sets
    stored = _device(backends, device.device_id)
    assert (stored.outbox_depth, stored.update_state, stored.health) == (41, "IDLE", {"fps": 4.5})
    split = _through(client, device.device_id, [b'{"outbox_depth"', b": 42}"], headers=device.headers)
    assert split.status == 200 and not split.passed_on and _device(backends, device.device_id).outbox_depth == 42


def test_the_same_answer_as_the_route(client: TestClient, device: EnrolledDevice) -> None:
    fast = _through(client, device.device_id, _beat(model_version="2.0.0"), headers=device.headers)
    routed = client.post(f"/api/v1/devices/{device.device_id}/heartbeat", content=_beat(model_version="2.0.0"),
                         headers={**device.headers, "Content-Type": "text/json"})  # not application/json: the route
    assert routed.status_code == 422  # FastAPI reads no JSON from text/json: the body is missing
    routed = client.post(f"/api/v1/devices/{device.device_id}/heartbeat", json={"model_version": "2.0.0"},
                         headers=device.headers)
    assert fast.status == routed.status_code == 200 and fast.body == routed.content


OWN = "the device's own secret"


@pytest.mark.parametrize(("method", "path", "authorization", "content_type", "body"), [
    ("POST", None, None, "application/json", _beat()),
    ("POST", None, "Basic abc", "application/json", _beat()),
    ("POST", None, "Bearer tso_not-a-device", "application/json", _beat()),
    ("POST", None, "Bearer tsd_wrong", "application/json", _beat()),
    ("POST", None, OWN, "text/plain", _beat()),
    ("POST", None, OWN, "application/json", b'{"outbox_depth": '),  # not JSON
    ("POST", None, OWN, "application/json", _beat(outbox_depth=-1)),  # not a Heartbeat
    ("POST", None, OWN, "application/json", b"[]"),
    ("POST", None, OWN, "application/json", b""),
    ("PUT", None, OWN, "application/json", _beat()),
    ("POST", "/api/v1/devices/{device_id}/heartbeat/", OWN, "application/json", _beat()),
])
def test_anything_else_goes_on_to_the_app_with_its_body(client: TestClient, device: EnrolledDevice,
                                                        backends: Backends, method: str, path: str | None,
                                                        authorization: str | None, content_type: str,
                                                        body: bytes) -> None:
    before = _device(backends, device.device_id).last_seen
    failures = _failures(backends)
    headers = {"Content-Type": content_type}
    if authorization is not None:
        headers["Authorization"] = f"Bearer {device.secret}" if authorization == OWN else authorization
    outcome = _through(client, device.device_id, [body[:5], body[5:]], method=method, headers=headers,
                       path=path.format(device_id=device.device_id) if path else None)
    assert outcome.passed_on and outcome.status == 418 and outcome.app_body == body
    assert _device(backends, device.device_id).last_seen == before  # nothing recorded
    assert _failures(backends) == failures  # counting the failure is the route's


def test_another_devices_secret_goes_on_to_the_app(client: TestClient, device: EnrolledDevice,
                                                   operator_token: str, backends: Backends) -> None:
    other = enroll(client, operator_token)
    outcome = _through(client, device.device_id, _beat(outbox_depth=3), headers=other.headers)
    assert outcome.passed_on and _device(backends, device.device_id).outbox_depth != 3


def test_a_blocked_credential_goes_on_to_the_app_until_the_apps_clock_passes_the_block(
        client: TestClient, device: EnrolledDevice, backends: Backends) -> None:
    blocked = CredentialLimits().keys(Kind.bearer, ADDRESS, device.secret)[0].name
    until = datetime.now(UTC) + timedelta(seconds=600)
    with backends.sessions() as session:
        session.add(CredentialFailure(key=blocked, window_start=datetime.now(UTC), failures=99, blocked_until=until))
        session.commit()
    try:
        assert _through(client, device.device_id, _beat(), headers=device.headers).passed_on
        later: Callable[[], float] = lambda: time.time() + 3600  # noqa: E731
        client.app.dependency_overrides[get_clock] = lambda: later  # type: ignore[attr-defined]
        try:
            outcome = _through(client, device.device_id, _beat(), headers=device.headers)
        finally:
            client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
        assert outcome.status == 200 and not outcome.passed_on
    finally:
        with backends.sessions() as session:
            session.execute(delete(CredentialFailure).where(CredentialFailure.key == blocked))
            session.commit()


def test_a_fault_of_the_fast_path_is_logged_and_the_route_answers(
        client: TestClient, device: EnrolledDevice, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    async def broken(self: heartbeat.FastPath) -> Callable[[], float]:
        raise RuntimeError("broken clock")

    monkeypatch.setattr(heartbeat.FastPath, "_clock", broken)
    with caplog.at_level(logging.ERROR, logger=heartbeat.__name__):
        response = client.post(f"/api/v1/devices/{device.device_id}/heartbeat", json={}, headers=device.headers)
    assert response.status_code == 200
    assert "heartbeat fast path failed" in caplog.text and "broken clock" in caplog.text


def test_refusals_keep_their_answers_headers_and_metrics(client: TestClient, device: EnrolledDevice,
                                                         operator_token: str, viewer_token: str,
                                                         backends: Backends) -> None:
    path = f"/api/v1/devices/{device.device_id}/heartbeat"
    failures = _failures(backends)
    wrong = client.post(path, json={}, headers=auth("tsd_wrong"))
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    assert wrong.json()["type"] == "/problems/unauthorized" and _failures(backends) == failures + 2  # both keys
    other = enroll(client, operator_token)
    for token in (other.secret, operator_token):
        refused = client.post(path, json={}, headers=auth(token))
        assert refused.status_code == 403 and refused.json()["detail"] == "a device may only send its own heartbeat"
    invalid = client.post(path, json={"outbox_depth": -1}, headers=device.headers)
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["loc"] == ["body", "outbox_depth"]
    accepted = client.post(path, json={}, headers=device.headers)
    for response in (wrong, invalid, accepted):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    scrape = client.get("/metrics", headers=auth(viewer_token)).text
    observed = {(sample.labels["route"], sample.labels["status"]) for family in text_string_to_metric_families(scrape)
                if family.name == "tinysphere_http_request_duration_seconds" for sample in family.samples
                if sample.name.endswith("_count") and sample.labels["method"] == "POST"}
    assert {(PATH, "2xx"), (PATH, "4xx")} <= observed  # answered by the fast path or the route: one label
