"""`Idempotency-Key` on creating POSTs: one creation per key and body, the first answer replayed, and the
same key with another body refused; concurrent duplicates wait on PostgreSQL's unique index."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx2
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import func, select, text

from server.api.deps import get_clock
from server.api.idempotency import Idempotency
from server.app import create_app
from server.backends import Backends
from server.db.models import ApiToken, DriftLabel, IdempotencyKey, Role, Rollout
from server.identity import authenticate_operator, create_api_token
from server.worker.runner import Worker
from tests.server.registry.fixtures import Repo, publish
from tests.server.replicas import Clock
from tests.server.utils import PackageSpec, auth, build_package, drift_record, enroll, upload
from tests.utils.wait import wait_until

VERSION = "9.2.0"
T = TypeVar("T")


@pytest.fixture(scope="module")
def bundle(repo: Repo, tmp_path_factory: pytest.TempPathFactory) -> str:
    publish(repo, tmp_path_factory.mktemp("idempotent"), VERSION)
    return VERSION


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def _plan(client: TestClient, operator_token: str, count: int = 2, soak_s: int = 60) -> dict[str, Any]:
    """A rollout body over `count` new devices of their own tag."""
    tag = f"once-{uuid.uuid4().hex[:8]}"
    for _ in range(count):
        enroll(client, operator_token, tags=[tag])
    return {"model": "digits", "bundle_version": VERSION, "selector": {"tags": [tag]},
            "waves": [{"fraction": 1.0, "soak_s": soak_s}]}


def _rollouts(backends: Backends, plan: dict[str, Any]) -> int:
    with backends.sessions() as session:
        return session.scalar(select(func.count()).select_from(Rollout).where(
            Rollout.selector.contains(plan["selector"]))) or 0


def test_the_same_key_and_body_replay_the_first_answer(bundle: str, client: TestClient, backends: Backends,
                                                      operator_token: str) -> None:
    plan, headers = _plan(client, operator_token), {**auth(operator_token), **_key()}
    first = client.post("/api/v1/rollouts", json=plan, headers=headers)
    again = client.post("/api/v1/rollouts", json=plan, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.json() == first.json() and _rollouts(backends, plan) == 1
    fresh = client.post("/api/v1/rollouts", json=plan, headers={**auth(operator_token), **_key()})
    assert fresh.status_code == 409  # a new key creates again: here the devices are already busy


def test_the_same_key_with_another_body_is_refused(bundle: str, client: TestClient, backends: Backends,
                                                   operator_token: str) -> None:
    plan, headers = _plan(client, operator_token), {**auth(operator_token), **_key()}
    assert client.post("/api/v1/rollouts", json=plan, headers=headers).status_code == 201
    other = client.post("/api/v1/rollouts", json={**plan, "waves": [{"count": 1, "soak_s": 5}]}, headers=headers)
    assert other.status_code == 422 and other.headers["content-type"] == "application/problem+json"
    assert other.json()["type"] == "/problems/idempotency-key-reused"
    elsewhere = client.post("/api/v1/enrollment-tokens", json={}, headers=headers)  # another endpoint: another request
    assert elsewhere.json()["type"] == "/problems/idempotency-key-reused"
    assert _rollouts(backends, plan) == 1


def _at_once(calls: list[Callable[[], T]]) -> list[T]:
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_concurrent_duplicates_create_one(bundle: str, repo: Repo, client: TestClient, backends: Backends,
                                          operator_token: str) -> None:
    plan, headers = _plan(client, operator_token, count=3), {**auth(operator_token), **_key()}

    def post() -> httpx2.Response:
        with httpx2.Client(base_url=repo.url, timeout=30) as http:  # the uvicorn server, over loopback
            return http.post("/api/v1/rollouts", json=plan, headers=headers)

    answers = _at_once([post] * 4)
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1 and _rollouts(backends, plan) == 1


class Answer(BaseModel):
    value: str


def test_a_duplicate_waits_on_the_unique_index_for_the_first(backends: Backends) -> None:
    with backends.sessions() as session:
        operator = authenticate_operator(session, create_api_token(session, "waiting", Role.operator))
        session.commit()
    assert operator is not None
    key, body = str(uuid.uuid4()), Answer(value="asked")
    with backends.sessions() as first, backends.sessions() as second:
        claim = Idempotency(key, first).claim(operator, "POST /test", body)
        pid = second.connection().connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(lambda: Idempotency(key, second).claim(operator, "POST /test", body))

            def blocked() -> bool:
                with backends.engine.connect() as probe:
                    return probe.execute(text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :p"),
                                         {"p": pid}).scalar() is True

            wait_until(blocked, 10, "the second claim to wait on the first one's row", interval=0.2)
            assert not waiting.done()
            claim.keep(Answer(value="first"))
            first.commit()
            replay = waiting.result(timeout=10)
    assert replay.replay(Answer) == Answer(value="first")


def test_a_refused_request_keeps_nothing(bundle: str, client: TestClient, operator_token: str) -> None:
    plan, headers = _plan(client, operator_token), {**auth(operator_token), **_key()}
    missing = client.post("/api/v1/rollouts", json={**plan, "bundle_version": "0.0.404"}, headers=headers)
    assert missing.status_code == 404
    assert client.post("/api/v1/rollouts", json=plan, headers=headers).status_code == 201


def test_keys_are_per_token_and_expire(backends: Backends, operator_token: str) -> None:
    with backends.sessions() as session:
        other = create_api_token(session, "second operator", Role.operator)
        session.commit()
    clock = Clock(time.time())
    app = create_app(backends)
    app.dependency_overrides[get_clock] = lambda: clock
    headers = _key()
    with TestClient(app) as client:
        def token(bearer: str) -> str:
            response = client.post("/api/v1/enrollment-tokens", json={"ttl_s": 600},
                                   headers={**auth(bearer), **headers})
            assert response.status_code == 201, response.text
            return str(response.json()["token"])

        first = token(operator_token)
        assert token(operator_token) == first
        assert token(other) != first  # another caller's key of the same name
        clock.advance(24 * 3600 - 1)
        assert token(operator_token) == first
        clock.advance(2)
        assert token(operator_token) != first  # expired: the key starts over


def test_a_created_token_is_replayed_but_stored_encrypted(client: TestClient, backends: Backends,
                                                          admin_token: str) -> None:
    name, key = f"idempotent {uuid.uuid4().hex[:8]}", _key()
    first = client.post("/api/v1/tokens", json={"name": name, "role": "viewer"}, headers={**auth(admin_token), **key})
    again = client.post("/api/v1/tokens", json={"name": name, "role": "viewer"}, headers={**auth(admin_token), **key})
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    with backends.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ApiToken).where(ApiToken.name == name)) == 1
        stored = [bytes(row) for row in session.scalars(select(IdempotencyKey.answer)) if row is not None]
        hashes = list(session.scalars(select(IdempotencyKey.key_hash)))
    secret = first.json()["token"].encode()
    assert stored and not any(secret in row or name.encode() in row for row in stored)
    assert key["Idempotency-Key"] not in hashes


def test_a_label_is_added_once(client: TestClient, backends: Backends, operator_token: str) -> None:
    device = enroll(client, operator_token)
    spec = PackageSpec(device.device_id, [drift_record(1)])
    assert upload(client, device, spec.package_id, build_package(spec)).status_code == 201
    Worker(backends).drain()
    event = client.get("/api/v1/drift/events", params={"device_id": device.device_id},
                       headers=auth(operator_token)).json()["items"][0]
    headers = {**auth(operator_token), **_key()}
    path = f"/api/v1/drift/events/{event['id']}/labels"
    first, again = (client.post(path, json={"label": "dog"}, headers=headers) for _ in range(2))
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    with backends.sessions() as session:
        assert session.scalar(select(func.count()).select_from(DriftLabel).where(
            DriftLabel.drift_event_id == event["id"])) == 1


def test_a_short_key_is_refused(client: TestClient, operator_token: str) -> None:
    response = client.post("/api/v1/enrollment-tokens", json={},
                           headers={**auth(operator_token), "Idempotency-Key": "short"})
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
