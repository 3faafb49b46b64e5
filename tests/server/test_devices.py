"""Fleet APIs: list with filters and pagination, detail, update, decommission, summary."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from tests.server.utils import auth, enroll


def test_list_filters_and_paginates(client: TestClient, operator_token: str, viewer_token: str) -> None:
    tag = f"site-{uuid.uuid4().hex[:6]}"
    devices = [enroll(client, operator_token, name=f"cam-{i}", tags=[tag]) for i in range(3)]
    version = f"v{uuid.uuid4().hex[:6]}"
    client.post(f"/api/v1/devices/{devices[0].device_id}/heartbeat", json={"model_version": version},
                headers=devices[0].headers)
    page = client.get("/api/v1/devices", params={"tag": tag, "limit": 2}, headers=auth(viewer_token)).json()
    assert page["count"] == 3 and len(page["items"]) == 2
    rest = client.get("/api/v1/devices", params={"tag": tag, "limit": 2, "offset": 2},
                      headers=auth(viewer_token)).json()
    assert [d["id"] for d in page["items"] + rest["items"]] == [d.device_id for d in devices]
    by_version = client.get("/api/v1/devices", params={"model_version": version}, headers=auth(viewer_token))
    assert [d["id"] for d in by_version.json()["items"]] == [devices[0].device_id]
    seen = client.get("/api/v1/devices", params={"tag": tag, "seen_after": "2000-01-01T00:00:00Z"},
                      headers=auth(viewer_token)).json()
    assert seen["count"] == 1
    assert client.get("/api/v1/devices", params={"limit": 0}, headers=auth(viewer_token)).status_code == 422


def test_update_tags_name_location(client: TestClient, operator_token: str, viewer_token: str) -> None:
    device = enroll(client, operator_token)
    body = {"name": "gate camera", "location": "hall 3", "tags": ["b", "a", "a"]}
    response = client.patch(f"/api/v1/devices/{device.device_id}", json=body, headers=auth(operator_token))
    assert response.status_code == 200
    assert response.json()["tags"] == ["a", "b"] and response.json()["location"] == "hall 3"
    assert client.patch(f"/api/v1/devices/{device.device_id}", json=body,
                        headers=auth(viewer_token)).status_code == 403
    bad = client.patch(f"/api/v1/devices/{device.device_id}", json={"tags": ["no spaces allowed"]},
                       headers=auth(operator_token))
    assert bad.status_code == 422
    missing = client.patch("/api/v1/devices/dev-missing", json={}, headers=auth(operator_token))
    assert missing.status_code == 404


def test_decommission_revokes_the_secret(client: TestClient, operator_token: str) -> None:
    device = enroll(client, operator_token)
    path = f"/api/v1/devices/{device.device_id}"
    assert client.post(f"{path}/heartbeat", json={}, headers=device.headers).status_code == 200
    response = client.post(f"{path}/decommission", headers=auth(operator_token))
    assert response.json()["status"] == "decommissioned"
    assert client.post(f"{path}/heartbeat", json={}, headers=device.headers).status_code == 401
    assert client.get(path, headers=device.headers).status_code == 401


def test_summary_counts_status_versions_and_offline(client: TestClient, operator_token: str,
                                                   viewer_token: str) -> None:
    before = client.get("/api/v1/devices/summary", headers=auth(viewer_token)).json()
    silent, talking = enroll(client, operator_token), enroll(client, operator_token)
    client.post(f"/api/v1/devices/{talking.device_id}/heartbeat", json={"model_version": "sum-1"},
                headers=talking.headers)
    after = client.get("/api/v1/devices/summary", headers=auth(viewer_token)).json()
    assert after["total"] == before["total"] + 2
    assert after["offline"] == before["offline"] + 1  # never seen counts as offline
    assert after["by_model_version"]["sum-1"] == 1
    assert silent.device_id != talking.device_id


def test_an_enrollment_whose_answer_was_lost_can_be_repeated_with_its_attempt_key(
        client: TestClient, operator_token: str) -> None:
    token = client.post("/api/v1/enrollment-tokens", json={}, headers=auth(operator_token)).json()["token"]
    key, other = "k" * 43, "o" * 43
    first = client.post("/api/v1/devices/enroll", json={"attempt_key": key}, headers=auth(token))
    assert first.status_code == 201, first.text
    # the device lost power before storing the answer: the same token with the same key gives it back
    again = client.post("/api/v1/devices/enroll", json={"attempt_key": key}, headers=auth(token))
    assert again.status_code == 201, again.text
    assert again.json()["device_id"] == first.json()["device_id"]
    assert again.json()["device_secret"] != first.json()["device_secret"]
    beat = f"/api/v1/devices/{first.json()['device_id']}/heartbeat"
    assert client.post(beat, json={}, headers=auth(first.json()["device_secret"])).status_code == 401  # lost one
    assert client.post(beat, json={}, headers=auth(again.json()["device_secret"])).status_code == 200
    # anyone else holding the spent token gets nothing
    for body in ({"attempt_key": other}, {}):
        assert client.post("/api/v1/devices/enroll", json=body, headers=auth(token)).status_code == 401
    assert client.post("/api/v1/devices/enroll", json={"attempt_key": "short"}, headers=auth(token)).status_code == 422
    listed = client.get("/api/v1/devices?limit=500", headers=auth(operator_token)).json()["items"]
    assert [d["id"] for d in listed].count(first.json()["device_id"]) == 1


def test_a_decommissioned_device_cannot_come_back_through_its_attempt_key(
        client: TestClient, operator_token: str) -> None:
    token = client.post("/api/v1/enrollment-tokens", json={}, headers=auth(operator_token)).json()["token"]
    device_id = client.post("/api/v1/devices/enroll", json={"attempt_key": "k" * 43},
                            headers=auth(token)).json()["device_id"]
    client.post(f"/api/v1/devices/{device_id}/decommission", headers=auth(operator_token))
    again = client.post("/api/v1/devices/enroll", json={"attempt_key": "k" * 43}, headers=auth(token))
    assert again.status_code == 401
