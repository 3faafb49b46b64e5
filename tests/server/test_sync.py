"""Package uploads: streamed, checked, idempotent by package_id, queued for import."""

from __future__ import annotations

import hashlib
import os

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from server.backends import Backends
from server.db.models import Job, Package
from server.packages import object_key
from tests.server.utils import PackageSpec, auth, build_package, enroll, record, upload


def _package(device_id: str) -> tuple[str, bytes]:
    spec = PackageSpec(device_id, [record(1, "log", {"level": "INFO", "logger": "t", "message": "hi"})])
    return spec.package_id, build_package(spec)


def _jobs(backends: Backends, package_id: str) -> int:
    with backends.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Job).where(Job.package_id == package_id)) or 0)


def test_new_then_same_then_conflicting(client: TestClient, operator_token: str, backends: Backends) -> None:
    device = enroll(client, operator_token)
    package_id, body = _package(device.device_id)
    first = upload(client, device, package_id, body)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "queued" and first.json()["size"] == len(body)
    again = upload(client, device, package_id, body)
    assert again.status_code == 200 and again.json()["sha256"] == first.json()["sha256"]
    assert _jobs(backends, package_id) == 1
    other = upload(client, device, package_id, body + b"\0")
    assert other.status_code == 409
    key = object_key(device.device_id, package_id, hashlib.sha256(body).hexdigest())
    assert backends.store.exists("packages", key)


def test_sha256_mismatch_keeps_nothing(client: TestClient, operator_token: str, backends: Backends) -> None:
    device = enroll(client, operator_token)
    package_id, body = _package(device.device_id)
    wrong = hashlib.sha256(b"something else").hexdigest()
    assert upload(client, device, package_id, body, sha256=wrong).status_code == 400
    with backends.sessions() as session:
        assert session.get(Package, package_id) is None
    assert not backends.store.exists("packages", object_key(device.device_id, package_id, wrong))
    assert upload(client, device, package_id, body, sha256="not-hex").status_code == 422


def test_oversized_bodies_are_413(client: TestClient, operator_token: str, backends: Backends) -> None:
    device = enroll(client, operator_token)
    body = os.urandom(backends.settings.max_package_bytes + 1)
    assert upload(client, device, "too-big", body).status_code == 413

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    headers = {**device.headers, "X-Content-SHA256": hashlib.sha256(body).hexdigest()}
    response = client.put("/api/v1/sync/packages/too-big-chunked", content=chunks(), headers=headers)
    assert response.status_code == 413
    with backends.sessions() as session:
        assert session.get(Package, "too-big-chunked") is None


def test_uploads_need_a_device(client: TestClient, operator_token: str) -> None:
    device = enroll(client, operator_token)
    package_id, body = _package(device.device_id)
    headers = {"X-Content-SHA256": hashlib.sha256(body).hexdigest()}
    assert client.put(f"/api/v1/sync/packages/{package_id}", content=body, headers=headers).status_code == 401
    response = client.put(f"/api/v1/sync/packages/{package_id}", content=body,
                          headers={**headers, **auth(operator_token)})
    assert response.status_code == 403


def test_another_device_cannot_claim_or_read_a_package(client: TestClient, operator_token: str) -> None:
    owner, other = enroll(client, operator_token), enroll(client, operator_token)
    package_id, body = _package(owner.device_id)
    assert upload(client, owner, package_id, body).status_code == 201
    assert upload(client, other, package_id, body).status_code == 409
    assert client.get(f"/api/v1/sync/packages/{package_id}", headers=other.headers).status_code == 404
    assert client.get(f"/api/v1/sync/packages/{package_id}", headers=owner.headers).status_code == 200
    assert client.get(f"/api/v1/sync/packages/{package_id}", headers=auth(operator_token)).status_code == 200


def test_package_ids_are_validated(client: TestClient, operator_token: str) -> None:
    device = enroll(client, operator_token)
    for bad in ("..", "-leading-dash", "x" * 200, "a b"):
        assert upload(client, device, bad, b"x").status_code in (404, 422), bad
