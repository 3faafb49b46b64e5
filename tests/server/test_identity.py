"""Who may call what: 401 without a valid token, 403 for the wrong role or the wrong device."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from server.cli import main
from tests.server.utils import auth, enroll


def test_healthz_needs_no_token(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.parametrize("headers", [{}, auth("tso_not-a-token"), auth("tsd_nope"), auth("garbage"),
                                     {"Authorization": "Basic dXNlcjpwYXNz"}])
def test_requests_without_a_valid_token_are_401(client: TestClient, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/api/v1/devices"), ("GET", "/api/v1/drift/events"),
                         ("PUT", "/api/v1/sync/packages/p1"), ("POST", "/api/v1/devices/x/heartbeat"),
                         ("GET", "/api/v1/tokens")]:
        response = client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_roles_are_ordered(client: TestClient, viewer_token: str, operator_token: str, admin_token: str) -> None:
    assert client.get("/api/v1/devices", headers=auth(viewer_token)).status_code == 200
    body = {"ttl_s": 600}
    assert client.post("/api/v1/enrollment-tokens", json=body, headers=auth(viewer_token)).status_code == 403
    assert client.post("/api/v1/enrollment-tokens", json=body, headers=auth(operator_token)).status_code == 201
    assert client.get("/api/v1/tokens", headers=auth(operator_token)).status_code == 403
    assert client.get("/api/v1/tokens", headers=auth(admin_token)).status_code == 200


def test_admin_creates_and_revokes_tokens(client: TestClient, admin_token: str) -> None:
    created = client.post("/api/v1/tokens", json={"name": "ci", "role": "viewer"}, headers=auth(admin_token))
    assert created.status_code == 201
    token = created.json()["token"]
    assert client.get("/api/v1/devices", headers=auth(token)).status_code == 200
    listed = client.get("/api/v1/tokens", params={"limit": 500}, headers=auth(admin_token)).json()["items"]
    assert created.json()["id"] in [row["id"] for row in listed]
    assert all("token" not in row and "token_hash" not in row for row in listed)
    assert client.delete(f"/api/v1/tokens/{created.json()['id']}", headers=auth(admin_token)).status_code == 204
    assert client.get("/api/v1/devices", headers=auth(token)).status_code == 401


def test_devices_may_not_use_operator_endpoints(client: TestClient, operator_token: str) -> None:
    device = enroll(client, operator_token)
    assert client.get("/api/v1/devices", headers=device.headers).status_code == 403
    assert client.get("/api/v1/drift/events", headers=device.headers).status_code == 403


def test_a_device_reads_only_its_own_resources(client: TestClient, operator_token: str) -> None:
    one, other = enroll(client, operator_token), enroll(client, operator_token)
    assert client.get(f"/api/v1/devices/{one.device_id}", headers=one.headers).status_code == 200
    for path in ("", "/metrics", "/logs"):
        response = client.get(f"/api/v1/devices/{other.device_id}{path}", headers=one.headers)
        assert response.status_code == 403, path
    heartbeat = client.post(f"/api/v1/devices/{other.device_id}/heartbeat", json={}, headers=one.headers)
    assert heartbeat.status_code == 403


def test_enrollment_tokens_are_one_time(client: TestClient, operator_token: str) -> None:
    token = client.post("/api/v1/enrollment-tokens", json={}, headers=auth(operator_token)).json()["token"]
    first = client.post("/api/v1/devices/enroll", json={"hardware": {}}, headers=auth(token))
    assert first.status_code == 201
    again = client.post("/api/v1/devices/enroll", json={"hardware": {}}, headers=auth(token))
    assert again.status_code == 401
    assert client.post("/api/v1/devices/enroll", json={}, headers=auth(operator_token)).status_code == 403


def test_secrets_are_stored_hashed(client: TestClient, operator_token: str, backends) -> None:  # type: ignore[no-untyped-def]
    from server.db.models import Device

    device = enroll(client, operator_token)
    with backends.sessions() as session:
        row = session.get(Device, device.device_id)
        assert row is not None and row.secret_hash and device.secret not in row.secret_hash


def test_cli_creates_tokens(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                            client: TestClient, database_url: str) -> None:
    monkeypatch.setenv("TINYSPHERE_DATABASE_URL", database_url)
    assert main(["tokens", "create", "--role", "operator", "--name", "cli"]) == 0
    token = capsys.readouterr().out.strip()
    assert client.get("/api/v1/devices", headers=auth(token)).status_code == 200
    assert main(["devices", "enroll-token", "--tag", "lab"]) == 0
    enrollment = capsys.readouterr().out.strip()
    enrolled = client.post("/api/v1/devices/enroll", json={}, headers=auth(enrollment))
    assert enrolled.status_code == 201
    detail = client.get(f"/api/v1/devices/{enrolled.json()['device_id']}", headers=auth(token)).json()
    assert detail["tags"] == ["lab"]


def test_the_schema_needs_a_token_unless_docs_are_exposed(backends, client: TestClient,  # type: ignore[no-untyped-def]
                                                          operator_token: str) -> None:
    from server.app import create_app
    from server.backends import Backends

    assert backends.settings.expose_docs is False  # the default
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert client.get(path).status_code == 404
    assert client.get("/api/v1/openapi.json").status_code == 401
    schema = client.get("/api/v1/openapi.json", headers=auth(operator_token))
    assert schema.status_code == 200 and "/api/v1/rollouts" in schema.json()["paths"]
    exposed = Backends(backends.settings.model_copy(update={"expose_docs": True}), backends.engine,
                       backends.sessions, backends.store)
    with TestClient(create_app(exposed)) as open_client:
        assert open_client.get("/openapi.json").status_code == 200
        assert open_client.get("/docs").status_code == 200
        assert open_client.get("/healthz").status_code == 200


# Reachable without a bearer token, on purpose: liveness, enrollment (the one-time token is in the body)
# and presigned object URLs (the signature is the token).
PUBLIC = {"/healthz", "/api/v1/devices/enroll", "/api/v1/objects/{bucket}/{key}"}


def test_every_other_operation_is_401_without_a_token(client: TestClient) -> None:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    checked = 0
    for template, operations in paths.items():
        if template in PUBLIC:
            continue
        path = re.sub(r"\{[^}]+\}", "1", template)
        for method in operations:
            response = client.request(method.upper(), path, json={})
            assert response.status_code == 401, (method, template, response.status_code, response.text[:200])
            checked += 1
    assert checked >= 35  # every router is covered: fleet, sync, drift, registry, rollouts, tuf, tokens
