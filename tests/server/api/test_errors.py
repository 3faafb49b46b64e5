"""Every error is an RFC 9457 problem (`application/problem+json`) with a stable `type` per error class."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.backends import Backends, open_backends
from tests.server.utils import EnrolledDevice, PackageSpec, auth, build_package, enroll, record, upload

Call = Callable[[TestClient], httpx2.Response]
MEDIA_TYPE = "application/problem+json"


@pytest.fixture(scope="module")
def device(client: TestClient, operator_token: str) -> EnrolledDevice:
    return enroll(client, operator_token)


def _is_problem(response: httpx2.Response, status: int, type_: str, path: str) -> dict[str, Any]:
    """The problem in `response`, after checking its media type and every standard member."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == MEDIA_TYPE, response.headers
    body = dict(response.json())
    assert body["type"] == type_ and body["status"] == status and body["instance"] == path, body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


def test_401_unauthorized(client: TestClient) -> None:
    response = client.get("/api/v1/devices")
    body = _is_problem(response, 401, "/problems/unauthorized", "/api/v1/devices")
    assert response.headers["WWW-Authenticate"] == "Bearer" and body["detail"] == "missing or invalid token"


def test_403_forbidden(client: TestClient, viewer_token: str) -> None:
    response = client.post("/api/v1/enrollment-tokens", json={}, headers=auth(viewer_token))
    assert _is_problem(response, 403, "/problems/forbidden", "/api/v1/enrollment-tokens")["detail"] == \
        "needs role operator"


def test_404_for_a_resource_and_for_an_unknown_path(client: TestClient, viewer_token: str) -> None:
    missing = client.get("/api/v1/drift/events/123456789", headers=auth(viewer_token))
    assert _is_problem(missing, 404, "/problems/not-found", "/api/v1/drift/events/123456789")["detail"] == \
        "no drift event 123456789"
    _is_problem(client.get("/api/v1/nothing-here", headers=auth(viewer_token)), 404, "/problems/not-found",
                "/api/v1/nothing-here")


def test_405_method_not_allowed(client: TestClient, viewer_token: str) -> None:
    response = client.delete("/api/v1/devices", headers=auth(viewer_token))
    _is_problem(response, 405, "/problems/method-not-allowed", "/api/v1/devices")
    assert response.headers["Allow"] == "GET"


def test_409_conflict(client: TestClient, device: EnrolledDevice) -> None:
    spec = PackageSpec(device.device_id, [record(1, "log", {"message": "first"})])
    assert upload(client, device, spec.package_id, build_package(spec)).status_code == 201
    other = build_package(PackageSpec(device.device_id, [record(1, "log", {"message": "other"})],
                                      package_id=spec.package_id))
    path = f"/api/v1/sync/packages/{spec.package_id}"
    assert "other content" in _is_problem(upload(client, device, spec.package_id, other), 409, "/problems/conflict",
                                          path)["detail"]


def test_400_digest_mismatch_and_413_too_large(client: TestClient, device: EnrolledDevice,
                                               backends: Backends) -> None:
    path = "/api/v1/sync/packages/p-digest"
    _is_problem(upload(client, device, "p-digest", b"body", sha256="0" * 64), 400, "/problems/digest-mismatch", path)
    huge = bytes(backends.settings.max_package_bytes + 1)
    _is_problem(upload(client, device, "p-huge", huge), 413, "/problems/too-large", "/api/v1/sync/packages/p-huge")
    beat = f"/api/v1/devices/{device.device_id}/heartbeat"  # JSON bodies: the ASGI limit answers before the app
    body = {"health": {"note": "x" * (backends.settings.max_request_bytes + 10)}}
    limited = _is_problem(client.post(beat, json=body, headers=device.headers), 413, "/problems/too-large", beat)
    assert limited["detail"] == f"request body is larger than {backends.settings.max_request_bytes} bytes"


def test_416_range_not_satisfiable(client: TestClient, operator_token: str) -> None:
    data = b"ten bytes!"
    sha256 = hashlib.sha256(data).hexdigest()
    stored = client.put("/api/v1/registry/uploads/problems/x.tar", content=data,
                        headers={**auth(operator_token), "X-Content-SHA256": sha256})
    assert stored.status_code == 201, stored.text
    path = f"/tuf/targets/problems/{sha256}.x.tar"
    response = client.get(path, headers={**auth(operator_token), "Range": "bytes=100-"})
    _is_problem(response, 416, "/problems/range-not-satisfiable", path)
    assert response.headers["Content-Range"] == "bytes */10"


def test_422_lists_every_invalid_field(client: TestClient, viewer_token: str, operator_token: str) -> None:
    response = client.get("/api/v1/devices", params={"limit": 0, "offset": -1}, headers=auth(viewer_token))
    body = _is_problem(response, 422, "/problems/invalid-request", "/api/v1/devices")
    assert [(e["loc"], e["type"]) for e in body["errors"]] == [(["query", "limit"], "greater_than_equal"),
                                                              (["query", "offset"], "greater_than_equal")]
    assert body["detail"] == "query.limit: Input should be greater than or equal to 1 (and 1 more)"
    refused = client.get("/api/v1/sync/packages/p-1", headers=auth(operator_token))  # the server's own InputError
    assert "errors" not in _is_problem(refused, 422, "/problems/invalid-request", "/api/v1/sync/packages/p-1")


def test_429_keeps_retry_after(backends: Backends) -> None:
    strict = backends.settings.model_copy(update={"auth_failures_per_credential": 2})
    wrong = "tso_" + secrets.token_urlsafe(32)  # a prefix of its own: no other test's count is touched
    with TestClient(create_app(Backends(strict, backends.engine, backends.sessions, backends.store))) as client:
        for _ in range(2):
            _is_problem(client.get("/api/v1/devices", headers=auth(wrong)), 401, "/problems/unauthorized",
                        "/api/v1/devices")
        response = client.get("/api/v1/devices", headers=auth(wrong))
    _is_problem(response, 429, "/problems/too-many-attempts", "/api/v1/devices")
    assert 0 < int(response.headers["Retry-After"]) <= strict.auth_failure_window_s


@pytest.fixture(scope="module")
def database_down(backends: Backends) -> Iterator[TestClient]:
    settings = backends.settings.model_copy(update={"db_connect_timeout_s": 1})
    down = open_backends(settings, "postgresql://postgres@127.0.0.1:9/none", store=backends.store)
    try:
        with TestClient(create_app(down)) as client:
            yield client
    finally:
        down.close()


def test_503_keeps_retry_after(database_down: TestClient, viewer_token: str) -> None:
    for path, headers in (("/api/v1/devices", auth(viewer_token)), ("/healthz", {})):
        response = database_down.get(path, headers=headers)
        body = _is_problem(response, 503, "/problems/unavailable", path)
        assert response.headers["Retry-After"] == "7" and body["service"] == "database"


def test_500_tells_nothing_about_the_code(backends: Backends) -> None:
    app = create_app(backends)

    @app.get("/api/v1/broken")
    def broken() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        body = _is_problem(client.get("/api/v1/broken"), 500, "/problems/internal-error", "/api/v1/broken")
    assert "secret" not in body["detail"]
