"""Outages: the API answers 503 with Retry-After, nothing half-done is kept."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient

from server.app import create_app
from server.backends import Backends, open_backends
from server.storage.s3 import S3Store
from tests.server.utils import PackageSpec, auth, build_package, enroll, record, upload


def test_database_outage_is_503(backends: Backends, viewer_token: str) -> None:
    settings = backends.settings.model_copy(update={"db_connect_timeout_s": 1})
    down = open_backends(settings, "postgresql://postgres@127.0.0.1:9/none", store=backends.store)
    try:
        with TestClient(create_app(down)) as client:
            health = client.get("/healthz")
            assert health.status_code == 503 and health.headers["Retry-After"] == "7"
            response = client.get("/api/v1/devices", headers=auth(viewer_token))
            assert response.status_code == 503 and response.headers["Retry-After"] == "7"
    finally:
        down.close()


def test_storage_outage_is_503_and_keeps_nothing(client: TestClient, backends: Backends,
                                                 operator_token: str) -> None:
    broken = S3Store("http://127.0.0.1:9", "key-id", "secret-key", timeout_s=1)
    down = Backends(backends.settings, backends.engine, backends.sessions, broken)
    device = enroll(client, operator_token)
    spec = PackageSpec(device.device_id, [record(1, "log", {"message": "x"})])
    body = build_package(spec)
    with TestClient(create_app(down)) as outage:
        response = upload(outage, device, spec.package_id, body)
        assert response.status_code == 503 and response.headers["Retry-After"] == "7"
    check = client.get(f"/api/v1/sync/packages/{spec.package_id}", headers=device.headers)
    assert check.status_code == 404
    assert upload(client, device, spec.package_id, body).status_code == 201  # the device's retry succeeds
    assert hashlib.sha256(body).hexdigest() == client.get(
        f"/api/v1/sync/packages/{spec.package_id}", headers=device.headers).json()["sha256"]


def test_worker_survives_a_database_outage(backends: Backends) -> None:
    import threading

    from server.worker.runner import Worker

    settings = backends.settings.model_copy(update={"db_connect_timeout_s": 1, "worker_poll_s": 0.05})
    down = open_backends(settings, "postgresql://postgres@127.0.0.1:9/none", store=backends.store)
    stop = threading.Event()
    ticks: list[int] = []
    thread = threading.Thread(target=Worker(down).run_forever, args=(stop, lambda: ticks.append(1)))
    try:
        thread.start()
        while len(ticks) < 3 and thread.is_alive():  # keeps polling (with backoff) instead of dying
            stop.wait(0.05)
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(timeout=30)
        down.close()
    assert not thread.is_alive()


def test_api_starts_while_storage_is_down(backends: Backends) -> None:
    broken = S3Store("http://127.0.0.1:9", "key-id", "secret-key", timeout_s=1)
    with TestClient(create_app(Backends(backends.settings, backends.engine, backends.sessions, broken))) as client:
        assert client.get("/healthz").status_code == 200


def test_json_bodies_are_bounded(client: TestClient, operator_token: str, backends: Backends) -> None:
    device = enroll(client, operator_token)
    huge = {"health": {"note": "x" * (backends.settings.max_request_bytes + 10)}}
    path = f"/api/v1/devices/{device.device_id}/heartbeat"
    assert client.post(path, json=huge, headers=device.headers).status_code == 413

    def chunks():  # no Content-Length: counted while streaming
        yield b'{"health": {"note": "'
        for _ in range(backends.settings.max_request_bytes // 65536 + 2):
            yield b"x" * 65536
        yield b'"}}'

    headers = {**device.headers, "Content-Type": "application/json"}
    assert client.post(path, content=chunks(), headers=headers).status_code == 413
    long_value = {"health": {"note": "x" * 300}}
    assert client.post(path, json=long_value, headers=device.headers).status_code == 422
