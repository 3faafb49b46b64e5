"""`GET /metrics`: token-protected, parsed with prometheus_client's own parser, fed by requests and the database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from server.backends import Backends
from server.db.models import Bundle, Device, Job, JobState, Package, Rollout
from tests.server.registry.fixtures import Repo, repo  # noqa: F401 - the session's TUF repository


def _scrape(client: TestClient, token: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    resp = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    return {family.name: [(s.name, s.labels, s.value) for s in family.samples]
            for family in text_string_to_metric_families(resp.text)}


def test_metrics_need_a_token(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401


def test_metrics_show_requests_queue_devices_rollouts_and_tuf(client: TestClient, backends: Backends,
                                                              viewer_token: str, repo: Repo) -> None:  # noqa: F811
    version, device_id = f"v-{uuid.uuid4().hex[:8]}", f"metrics-{uuid.uuid4().hex[:12]}"
    with backends.sessions() as session:
        session.add(Device(id=device_id, last_seen=datetime.now(UTC), model_version=version))
        session.flush()
        session.add(Package(id=f"pkg-{device_id}", device_id=device_id, sha256="0" * 64, size=1, object_key="x"))
        session.flush()
        session.add(Job(kind="import", device_id=device_id, package_id=f"pkg-{device_id}", state=JobState.queued))
        bundle = Bundle(model="metrics", version=version, target_path=f"metrics/{version}", sha256="0" * 64, length=1,
                        object_key="x", custom={}, manifest={}, targets_version=1, published_by="test")
        session.add(bundle)
        session.flush()
        session.add(Rollout(bundle_id=bundle.id, state="paused", selector={}, waves=[], gates={}, wave_timeout_s=60,
                            created_by="test"))
        session.commit()
        bundle_id = bundle.id
    try:
        _check(client, viewer_token, version)
    finally:
        with backends.sessions() as session:
            for model in (Job, Package):
                session.query(model).filter(model.device_id == device_id).delete()
            session.query(Device).filter(Device.id == device_id).delete()
            session.query(Rollout).filter(Rollout.bundle_id == bundle_id).delete()
            session.query(Bundle).filter(Bundle.id == bundle_id).delete()
            session.commit()


def _check(client: TestClient, viewer_token: str, version: str) -> None:
    client.get("/healthz")
    families = _scrape(client, viewer_token)
    assert {"tinysphere_http_request_duration_seconds", "tinysphere_jobs", "tinysphere_jobs_parked",
            "tinysphere_queue_lag_seconds", "tinysphere_devices_online", "tinysphere_rollouts",
            "tinysphere_tuf_expiry_seconds"} <= families.keys()
    routes = {labels.get("route") for _, labels, _ in families["tinysphere_http_request_duration_seconds"]}
    assert "/healthz" in routes
    queued = [value for _, labels, value in families["tinysphere_jobs"] if labels["state"] == "queued"]
    assert queued and queued[0] >= 1
    online = {labels["model_version"]: value for _, labels, value in families["tinysphere_devices_online"]}
    assert online.get(version) == 1
    rollouts = {labels["state"]: value for _, labels, value in families["tinysphere_rollouts"]}
    assert rollouts.keys() == {"running", "paused", "completed", "aborted"} and rollouts["paused"] >= 1
    expiry = families["tinysphere_tuf_expiry_seconds"]
    assert "root" in {labels["role"] for _, labels, _ in expiry}  # the others once a bundle is published
    for _, labels, value in expiry:
        assert value > 0, labels


def test_requests_are_labelled_by_their_full_route_template(client: TestClient, viewer_token: str) -> None:
    """The API's `/devices/{device_id}` and the dashboard's are told apart, and no raw id becomes a label."""
    device_id = f"metrics-{uuid.uuid4().hex[:12]}"
    auth = {"Authorization": f"Bearer {viewer_token}"}
    assert client.get(f"/api/v1/devices/{device_id}", headers=auth).status_code == 404
    client.get(f"/ui/devices/{device_id}", follow_redirects=False)  # not signed in: redirected, still observed
    samples = _scrape(client, viewer_token)["tinysphere_http_request_duration_seconds"]
    routes = {labels["route"] for _, labels, _ in samples}
    assert {"/api/v1/devices/{device_id}", "/ui/devices/{device_id}"} <= routes
    assert "/devices/{device_id}" not in routes and not any(device_id in route for route in routes)
