"""Drift events, sample images, labels, metric series and logs through the API."""

from __future__ import annotations

import urllib.request

from fastapi.testclient import TestClient

from server.worker.runner import Worker
from tests.server.utils import JPEG, PackageSpec, auth, build_package, drift_record, enroll, record, upload


def test_events_filters_detail_and_labels(client: TestClient, operator_token: str, viewer_token: str,
                                          worker: Worker) -> None:
    device = enroll(client, operator_token)
    records = [drift_record(1, "blobs/a.jpg", detector="knn_distance"), drift_record(2, None, detector="page_hinkley"),
               record(3, "metric", {"name": "fps", "value": 5.0}), record(4, "metric", {"name": "fps", "value": 6.0}),
               record(5, "log", {"level": "ERROR", "logger": "camera", "message": "timeout", "retry": 2}),
               record(6, "log", {"level": "INFO", "logger": "sync", "message": "ok"})]
    spec = PackageSpec(device.device_id, records, {"a.jpg": JPEG})
    assert upload(client, device, spec.package_id, build_package(spec)).status_code == 201
    worker.drain()
    viewer = auth(viewer_token)
    listed = client.get("/api/v1/drift/events", params={"device_id": device.device_id}, headers=viewer).json()
    assert listed["count"] == 2 and [e["seq"] for e in listed["items"]] == [2, 1]
    only = client.get("/api/v1/drift/events", params={"device_id": device.device_id, "detector": "page_hinkley"},
                      headers=viewer).json()
    assert [e["seq"] for e in only["items"]] == [2]
    event_id = listed["items"][1]["id"]
    detail = client.get(f"/api/v1/drift/events/{event_id}", headers=viewer).json()
    assert detail["vector"] == [0.1, 0.2, 0.3] and detail["sample_url"]
    with urllib.request.urlopen(detail["sample_url"], timeout=10) as response:  # presigned, no token
        assert response.read() == JPEG
    assert client.get(f"/api/v1/drift/events/{listed['items'][0]['id']}", headers=viewer).json()["sample_url"] is None
    assert client.post(f"/api/v1/drift/events/{event_id}/labels", json={"label": "dog"},
                       headers=viewer).status_code == 403
    for bad in ("", " leading", "x" * 65, "semi;colon"):
        response = client.post(f"/api/v1/drift/events/{event_id}/labels", json={"label": bad},
                               headers=auth(operator_token))
        assert response.status_code == 422, bad
    assert client.post("/api/v1/drift/events/999999999/labels", json={"label": "dog"},
                       headers=auth(operator_token)).status_code == 404

    series = client.get(f"/api/v1/devices/{device.device_id}/metrics", params={"name": "fps"},
                        headers=device.headers).json()["items"]
    assert [(p["seq"], p["value"]) for p in series] == [(3, 5.0), (4, 6.0)]
    logs_url = f"/api/v1/devices/{device.device_id}/logs"
    logs = client.get(logs_url, params={"level": "error"}, headers=viewer).json()["items"]
    assert [(line["message"], line["extra"]) for line in logs] == [("timeout", {"retry": 2})]
    after = client.get(logs_url, params={"after_seq": 5}, headers=viewer).json()["items"]
    assert [line["seq"] for line in after] == [6]


def test_unknown_event_is_404(client: TestClient, viewer_token: str) -> None:
    assert client.get("/api/v1/drift/events/123456789", headers=auth(viewer_token)).status_code == 404
