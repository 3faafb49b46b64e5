"""The OpenAPI schema declares every error each operation can answer with, each as a `Problem`."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.utils import auth

PROBLEM = {"$ref": "#/components/schemas/Problem"}
# Problems an operation's signature does not show: what its handler or the layer below refuses.
EXTRA: dict[tuple[str, str], set[int]] = {
    ("post", "/api/v1/devices/enroll"): {403},
    ("post", "/api/v1/devices/{device_id}/heartbeat"): {403},
    ("put", "/api/v1/sync/packages/{package_id}"): {400, 409},
    ("put", "/api/v1/registry/uploads/{target_path}"): {400},
    ("put", "/api/v1/registry/root"): {409},
    ("post", "/api/v1/registry/publish"): {404, 409},
    ("post", "/api/v1/rollouts"): {404, 409},
    ("post", "/api/v1/rollouts/{rollout_id}/pause"): {409},
    ("post", "/api/v1/rollouts/{rollout_id}/resume"): {409},
    ("post", "/api/v1/rollouts/{rollout_id}/abort"): {409},
    ("post", "/api/v1/tokens"): {409},
    ("post", "/api/v1/enrollment-tokens"): {409},
    ("post", "/api/v1/drift/events/{event_id}/labels"): {409},
    ("get", "/tuf/targets/{path}"): {416},
    ("get", "/api/v1/objects/{bucket}/{key}"): {403},
}
# Authenticated operations that admit any operator or device: nobody known is refused there.
ANY_CALLER = {("get", "/tuf/metadata/{name}"), ("get", "/tuf/targets/{path}"),
              ("get", "/api/v1/sync/packages/{package_id}")}


@pytest.fixture(scope="module")
def schema(client: TestClient, viewer_token: str) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json", headers=auth(viewer_token))
    assert response.status_code == 200
    return dict(response.json())


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, operation) for path, item in schema["paths"].items() for method, operation in item.items()]


def _expected(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    """What the operation must declare, from what it takes: a token, path parameters, parameters, a body."""
    where = {parameter["in"] for parameter in operation.get("parameters", [])}
    body = "requestBody" in operation
    expected = {503} | EXTRA.get((method, path), set())
    if operation.get("security"):
        expected |= {401, 429} | ({403} if (method, path) not in ANY_CALLER else set())
    if "path" in where:
        expected.add(404)
    if where or body:
        expected.add(422)
    if body:
        expected.add(413)
    return expected


def test_every_operation_declares_its_problems(schema: dict[str, Any]) -> None:
    operations = _operations(schema)
    assert len(operations) >= 40
    for method, path, operation in operations:
        declared = {int(code) for code in operation["responses"] if int(code) >= 400}
        assert declared == _expected(method, path, operation), (method, path)


def test_every_declared_error_is_a_problem_with_its_headers(schema: dict[str, Any]) -> None:
    for method, path, operation in _operations(schema):
        for code, response in operation["responses"].items():
            if int(code) < 400:
                continue
            assert response["content"] == {"application/problem+json": {"schema": PROBLEM}}, (method, path, code)
            headers = set(response.get("headers", {}))
            assert headers == {"401": {"WWW-Authenticate"}, "429": {"Retry-After"},
                               "503": {"Retry-After"}}.get(code, set()), (method, path, code)
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "instance"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]  # FastAPI's own 422 body is gone
