"""Property-based requests generated from the OpenAPI schema: no input may cause a 5xx, and every answer
(errors included) has a status, a content type, headers and a body that the schema declares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server.app import create_app
from server.backends import Backends
from tests.server.utils import EnrolledDevice, auth, enroll

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def app_and_device(backends: Backends, operator_token: str) -> Iterator[tuple[Any, EnrolledDevice]]:
    app = create_app(backends)
    with TestClient(app) as client:
        yield app, enroll(client, operator_token)


def _headers(path: str, device: EnrolledDevice, admin_token: str) -> dict[str, str]:
    device_paths = ("/api/v1/sync/", "/heartbeat", "/metrics", "/logs")
    return auth(device.secret if any(part in path for part in device_paths) else admin_token)


def test_no_server_errors_and_answers_conform(app_and_device: tuple[Any, EnrolledDevice], admin_token: str) -> None:
    app, device = app_and_device
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app, headers=auth(admin_token))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        _fuzz(operation, _headers(operation.path, device, admin_token), device)


def _fuzz(operation: Any, headers: dict[str, str], device: EnrolledDevice) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def conforms(case: Any) -> None:
        parameters = case.path_parameters or {}
        if "device_id" in parameters and headers == device.headers:
            parameters["device_id"] = device.device_id
        if isinstance(parameters.get("token_id"), int) and 0 < parameters["token_id"] < 10**6:
            parameters["token_id"] += 10**6  # never revoke the tokens other tests hold
        response = case.call(headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)

    conforms()
