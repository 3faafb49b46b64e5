"""Package uploads: streamed, checked, owned by their device, idempotent by (device_id, package_id), queued."""

from __future__ import annotations

import hashlib
import os

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from server.backends import Backends
from server.db.models import Job, Package, Record
from server.packages import object_key
from server.worker.runner import Worker
from tests.server.utils import EnrolledDevice, PackageSpec, auth, build_package, enroll, record, upload


def _package(device_id: str) -> tuple[str, bytes]:
    spec = PackageSpec(device_id, [record(1, "log", {"level": "INFO", "logger": "t", "message": "hi"})])
    return spec.package_id, build_package(spec)


def _jobs(backends: Backends, package_id: str, device_id: str | None = None) -> int:
    query = select(func.count()).select_from(Job).where(Job.package_id == package_id)
    if device_id is not None:
        query = query.where(Job.device_id == device_id)
    with backends.sessions() as session:
        return int(session.scalar(query) or 0)


def _stored(backends: Backends, package_id: str) -> dict[str, tuple[str, str]]:
    """device_id -> (sha256, status) of every package stored under `package_id`."""
    with backends.sessions() as session:
        rows = session.scalars(select(Package).where(Package.id == package_id))
        return {p.device_id: (p.sha256, p.status) for p in rows}


def _records(backends: Backends, device_id: str) -> list[tuple[int, str, str]]:
    with backends.sessions() as session:
        rows = session.scalars(select(Record).where(Record.device_id == device_id).order_by(Record.seq))
        return [(r.seq, r.package_id, r.data.get("message", "")) for r in rows]


def _ack(body: dict[str, str]) -> tuple[str, str, str]:
    """What an answer names: the package id, its device and the SHA-256 of the stored bytes."""
    return body["id"], body["device_id"], body["sha256"]


def _log_package(device: EnrolledDevice, package_id: str, message: str, claimed_device: str | None = None
                 ) -> bytes:
    data = {"level": "INFO", "logger": "t", "message": message}
    return build_package(PackageSpec(claimed_device or device.device_id, [record(1, "log", data)],
                                     package_id=package_id))


def test_new_then_same_then_conflicting(client: TestClient, operator_token: str, backends: Backends) -> None:
    device = enroll(client, operator_token)
    package_id, body = _package(device.device_id)
    first = upload(client, device, package_id, body)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "queued" and first.json()["size"] == len(body)
    sha = hashlib.sha256(body).hexdigest()
    assert _ack(first.json()) == (package_id, device.device_id, sha)
    again = upload(client, device, package_id, body)  # the same device, the same bytes: already stored
    assert again.status_code == 200
    assert _ack(again.json()) == (package_id, device.device_id, sha)
    assert _jobs(backends, package_id) == 1
    other = upload(client, device, package_id, body + b"\0")  # the same device, other bytes: a conflict
    assert other.status_code == 409
    assert _stored(backends, package_id) == {device.device_id: (sha, "queued")}
    assert backends.store.exists("packages", object_key(device.device_id, package_id, sha))
    assert not backends.store.exists("packages", object_key(device.device_id, package_id,
                                                            hashlib.sha256(body + b"\0").hexdigest()))


def test_another_devices_package_id_never_collides(client: TestClient, operator_token: str, backends: Backends,
                                                    worker: Worker) -> None:
    owner, other = enroll(client, operator_token), enroll(client, operator_token)
    package_id = f"pkg-{owner.device_id}-next"
    mine, theirs = _log_package(owner, package_id, "owner's"), _log_package(other, package_id, "other's")
    assert upload(client, owner, package_id, mine).status_code == 201
    answer = upload(client, other, package_id, theirs)
    assert answer.status_code == 201, answer.text  # kept apart: the other device's own package
    assert _ack(answer.json()) == (package_id, other.device_id, hashlib.sha256(theirs).hexdigest())
    assert upload(client, other, package_id, theirs).status_code == 200
    assert upload(client, owner, package_id, mine).status_code == 200
    assert upload(client, other, package_id, mine).status_code == 409  # its own id, other bytes
    assert _stored(backends, package_id) == {owner.device_id: (hashlib.sha256(mine).hexdigest(), "queued"),
                                             other.device_id: (hashlib.sha256(theirs).hexdigest(), "queued")}
    assert _jobs(backends, package_id, owner.device_id) == _jobs(backends, package_id, other.device_id) == 1
    worker.drain()
    assert {d: status for d, (_, status) in _stored(backends, package_id).items()} == {
        owner.device_id: "imported", other.device_id: "imported"}
    assert _records(backends, owner.device_id) == [(1, package_id, "owner's")]
    assert _records(backends, other.device_id) == [(1, package_id, "other's")]


def test_a_squatted_id_leaves_its_owner_whole(client: TestClient, operator_token: str, backends: Backends,
                                               worker: Worker) -> None:
    owner, squatter = enroll(client, operator_token), enroll(client, operator_token)
    package_id = f"pkg-{owner.device_id}-squatted"
    forged = _log_package(squatter, package_id, "forged", claimed_device=owner.device_id)
    assert upload(client, squatter, package_id, forged).status_code == 201  # stored as the squatter's
    genuine = _log_package(owner, package_id, "genuine")
    assert upload(client, owner, package_id, genuine).status_code == 201  # the owner's upload is not refused
    worker.drain()
    stored = _stored(backends, package_id)
    assert stored[owner.device_id] == (hashlib.sha256(genuine).hexdigest(), "imported")
    assert stored[squatter.device_id] == (hashlib.sha256(forged).hexdigest(), "rejected")  # it names the owner
    assert _records(backends, owner.device_id) == [(1, package_id, "genuine")]
    assert _records(backends, squatter.device_id) == []


def test_sha256_mismatch_keeps_nothing(client: TestClient, operator_token: str, backends: Backends) -> None:
    device = enroll(client, operator_token)
    package_id, body = _package(device.device_id)
    wrong = hashlib.sha256(b"something else").hexdigest()
    assert upload(client, device, package_id, body, sha256=wrong).status_code == 400
    assert _stored(backends, package_id) == {}
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
    assert _stored(backends, "too-big-chunked") == {}


def test_uploads_need_a_device(client: TestClient, operator_token: str) -> None:
    device = enroll(client, operator_token)
    package_id, body = _package(device.device_id)
    headers = {"X-Content-SHA256": hashlib.sha256(body).hexdigest()}
    assert client.put(f"/api/v1/sync/packages/{package_id}", content=body, headers=headers).status_code == 401
    response = client.put(f"/api/v1/sync/packages/{package_id}", content=body,
                          headers={**headers, **auth(operator_token)})
    assert response.status_code == 403


def test_a_device_reads_its_own_packages_and_operators_name_the_device(client: TestClient,
                                                                        operator_token: str) -> None:
    owner, other = enroll(client, operator_token), enroll(client, operator_token)
    package_id, body = _package(owner.device_id)
    assert upload(client, owner, package_id, body).status_code == 201
    url = f"/api/v1/sync/packages/{package_id}"
    assert client.get(url, headers=other.headers).status_code == 404
    assert client.get(url, params={"device_id": owner.device_id}, headers=other.headers).status_code == 404
    mine = client.get(url, headers=owner.headers)
    assert mine.status_code == 200 and mine.json()["device_id"] == owner.device_id
    assert client.get(url, headers=auth(operator_token)).status_code == 422  # which device's?
    named = client.get(url, params={"device_id": owner.device_id}, headers=auth(operator_token))
    assert named.status_code == 200 and named.json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert client.get(url, params={"device_id": other.device_id}, headers=auth(operator_token)).status_code == 404


def test_package_ids_are_validated(client: TestClient, operator_token: str) -> None:
    device = enroll(client, operator_token)
    for bad in ("..", "-leading-dash", "x" * 200, "a b"):
        assert upload(client, device, bad, b"x").status_code in (404, 422), bad
