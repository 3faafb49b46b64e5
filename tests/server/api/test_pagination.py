"""Every list is paged one way: `limit` and `offset` in; items, `count`, `limit`, `offset` and `next` out."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.backends import Backends
from server.worker.runner import Worker
from tests.server.registry.fixtures import Repo, publish
from tests.server.utils import PackageSpec, auth, build_package, drift_record, enroll, record, upload

LISTS = {"/api/v1/devices", "/api/v1/devices/{device_id}/metrics", "/api/v1/devices/{device_id}/logs",
         "/api/v1/drift/events", "/api/v1/sync/packages", "/api/v1/jobs", "/api/v1/tokens", "/api/v1/registry/models",
         "/api/v1/registry/models/{model}/versions", "/api/v1/rollouts", "/api/v1/rollouts/{rollout_id}/devices",
         "/api/v1/rollouts/{rollout_id}/events"}
PAGE_FIELDS = {"items", "count", "limit", "offset", "next"}


@pytest.fixture(scope="module")
def schema(client: TestClient, viewer_token: str) -> dict[str, Any]:
    return dict(client.get("/api/v1/openapi.json", headers=auth(viewer_token)).json())


@pytest.fixture(scope="module")
def fleet(repo: Repo, client: TestClient, backends: Backends, operator_token: str,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two or more items in every list: devices with records, two bundle versions, a rollout."""
    tag = f"pages-{uuid.uuid4().hex[:8]}"
    devices = [enroll(client, operator_token, tags=[tag]) for _ in range(2)]
    lone = enroll(client, operator_token)
    records = [drift_record(1), drift_record(2), record(3, "metric", {"name": "fps", "value": 5.0}),
               record(4, "metric", {"name": "fps", "value": 6.0}), record(5, "log", {"message": "a"}),
               record(6, "log", {"message": "b"}), record(7, "log", {"message": "c"})]
    for part in (records[:4], records[4:]):
        spec = PackageSpec(devices[0].device_id, part)
        assert upload(client, devices[0], spec.package_id, build_package(spec)).status_code == 201
    Worker(backends).drain()
    tmp = tmp_path_factory.mktemp("pages")
    publish(repo, tmp, "9.0.0")
    publish(repo, tmp, "9.1.0")
    waves = [{"count": 1, "soak_s": 60}, {"fraction": 1.0, "soak_s": 60}]
    for selector in ({"device_ids": [lone.device_id]}, {"tags": [tag]}):
        body = {"model": "digits", "bundle_version": "9.1.0", "selector": selector, "waves": waves}
        created = client.post("/api/v1/rollouts", json=body, headers=auth(operator_token))
        assert created.status_code == 201, created.text
    rollout = f"/api/v1/rollouts/{created.json()['id']}"
    for action in ("pause", "resume"):  # decisions for its events
        assert client.post(f"{rollout}/{action}", headers=auth(operator_token)).status_code == 200
    return {"device_id": devices[0].device_id, "model": "digits", "rollout_id": str(created.json()["id"]),
            "tag": tag}


def _list_operations(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """GET operations whose answer is a list: a JSON array, or an object carrying `items`."""
    found = {}
    for path, item in schema["paths"].items():
        answer = item.get("get", {}).get("responses", {}).get("200", {}).get("content", {}).get("application/json")
        if answer is None:
            continue
        body = answer["schema"]
        if "$ref" in body:
            body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
        if body.get("type") == "array" or "items" in body.get("properties", {}):
            found[path] = {"operation": item["get"], "body": body}
    return found


def test_every_list_is_a_page_with_bounded_limit(schema: dict[str, Any]) -> None:
    lists = _list_operations(schema)
    assert set(lists) == LISTS
    for path, found in lists.items():
        assert found["body"].get("type") == "object" and set(found["body"]["required"]) == PAGE_FIELDS, path
        parameters = {p["name"]: p["schema"] for p in found["operation"]["parameters"] if p["in"] == "query"}
        assert parameters["limit"]["minimum"] == 1 and parameters["limit"]["maximum"] in (500, 10_000), path
        assert parameters["offset"]["minimum"] == 0, path


def _walk(client: TestClient, token: str, url: str, limit: int) -> tuple[list[Any], int]:
    """Every item of a list, page by page through `next`."""
    page = client.get(url, params={"limit": limit}, headers=auth(token)).json()
    items, count, pages = list(page["items"]), page["count"], 1
    while page["next"] is not None:
        assert re.search(rf"[?&]limit={limit}&offset={len(items)}$", page["next"]), page["next"]
        page = client.get(page["next"], headers=auth(token)).json()
        assert page["count"] == count and page["offset"] == len(items)
        items.extend(page["items"])
        pages += 1
    assert pages == max(1, -(-count // limit))
    return items, count


def test_every_list_pages_through_next(schema: dict[str, Any], client: TestClient, fleet: dict[str, str],
                                       admin_token: str) -> None:
    walked = 0
    for path in _list_operations(schema):
        url = path.format(**fleet)
        first = client.get(url, params={"limit": 1}, headers=auth(admin_token))
        assert first.status_code == 200, (url, first.text)
        page = first.json()
        assert set(page) == PAGE_FIELDS and page["limit"] == 1 and page["offset"] == 0, url
        assert page["count"] >= 2 or path in ("/api/v1/registry/models",), (url, page["count"])
        items, count = _walk(client, admin_token, url, max(1, -(-page["count"] // 3)))
        assert len(items) == count, url
        walked += 1
    assert walked == len(LISTS)


def test_next_keeps_the_filters(client: TestClient, fleet: dict[str, str], viewer_token: str) -> None:
    page = client.get("/api/v1/devices", params={"tag": fleet["tag"], "limit": 1}, headers=auth(viewer_token)).json()
    assert page["count"] == 2 and page["next"] == f"/api/v1/devices?tag={fleet['tag']}&limit=1&offset=1"
    last = client.get(page["next"], headers=auth(viewer_token)).json()
    assert last["next"] is None and last["items"][0]["id"] != page["items"][0]["id"]
    assert fleet["tag"] in last["items"][0]["tags"]
