"""The heartbeat: records the report, returns desired state and pending labels, stays cheap."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import event, insert

from server.backends import Backends
from server.db.models import DriftEvent, Package
from server.worker.runner import Worker
from tests.server.utils import EnrolledDevice, PackageSpec, auth, build_package, drift_record, enroll, upload


@contextmanager
def statements(backends: Backends) -> Iterator[list[str]]:
    """The first word of every statement sent, by sessions on the engine or by its async connections."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.strip().split()[0].upper())

    execute = psycopg.AsyncCursor.execute

    async def recorded(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(query).strip().split()[0].upper())
        return await execute(cursor, query, *args, **kwargs)

    event.listen(backends.engine, "before_cursor_execute", record)
    psycopg.AsyncCursor.execute = recorded  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        psycopg.AsyncCursor.execute = execute  # type: ignore[method-assign]
        event.remove(backends.engine, "before_cursor_execute", record)


def _beat(client: TestClient, device: EnrolledDevice, **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/v1/devices/{device.device_id}/heartbeat", json=body, headers=device.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_report_is_stored_and_desired_state_returned(client: TestClient, operator_token: str) -> None:
    device = enroll(client, operator_token)
    report = {"model_version": "1.2.0", "update_state": "IDLE", "outbox_depth": 17, "evictions": 2,
              "health": {"fps": 4.5, "ok": True}}
    assert _beat(client, device, **report) == {"desired": {"bundle_version": None, "model": None, "target": None},
                                               "labels": []}
    client.put(f"/api/v1/devices/{device.device_id}/desired", json={"bundle_version": "1.3.0"},
               headers=auth(operator_token))
    assert _beat(client, device)["desired"]["bundle_version"] == "1.3.0"
    detail = client.get(f"/api/v1/devices/{device.device_id}", headers=auth(operator_token)).json()
    assert {k: detail[k] for k in report} == report and detail["last_seen"] is not None


def test_heartbeat_is_one_update(client: TestClient, operator_token: str, backends: Backends) -> None:
    device = enroll(client, operator_token)
    with statements(backends) as seen:
        _beat(client, device, model_version="1.0", outbox_depth=3)
    assert [s for s in seen if s not in ("BEGIN", "COMMIT", "ROLLBACK")] == ["WITH"]


def _drift_event(backends: Backends, device_id: str, seq: int) -> int:
    with backends.sessions() as session:
        package_id = f"hb-{device_id}-{seq}"
        session.execute(insert(Package).values(id=package_id, device_id=device_id, sha256="0" * 64, size=1,
                                               object_key="x"))
        event_id = session.execute(
            insert(DriftEvent).values(device_id=device_id, seq=seq, package_id=package_id, detector="knn")
            .returning(DriftEvent.id)
        ).scalar_one()
        session.commit()
    return int(event_id)


def test_labels_are_delivered_until_acknowledged(client: TestClient, operator_token: str,
                                                 backends: Backends) -> None:
    device = enroll(client, operator_token)
    event_id = _drift_event(backends, device.device_id, 5)
    label = client.post(f"/api/v1/drift/events/{event_id}/labels", json={"label": "dog"},
                        headers=auth(operator_token))
    assert label.status_code == 201
    with statements(backends) as seen:
        first = _beat(client, device)["labels"]
    assert [s for s in seen if s not in ("BEGIN", "COMMIT", "ROLLBACK")] == ["WITH", "SELECT"]
    assert first == [{"id": label.json()["id"], "drift_event_id": event_id, "seq": 5, "label": "dog",
                      "frame_seq": None, "vector": None, "predicted": None, "model_version": None}]
    assert _beat(client, device)["labels"] == first  # not acknowledged yet: sent again
    assert _beat(client, device, acked_labels=[first[0]["id"]])["labels"] == []
    assert _beat(client, device)["labels"] == []
    detail = client.get(f"/api/v1/drift/events/{event_id}", headers=auth(operator_token)).json()
    assert detail["labels"][0]["delivered_at"] is not None


def test_labels_carry_the_frame_seq_and_vector_of_the_sample(client: TestClient, operator_token: str,
                                                              backends: Backends, worker: Worker) -> None:
    device = enroll(client, operator_token)
    vector = [round(0.1 * i - 0.75, 2) for i in range(16)]
    records = [drift_record(7), drift_record(8), drift_record(9), drift_record(10)]
    records[0]["data"].update(frame_seq=42, vector=vector)
    records[1]["data"].update(frame_seq="43", vector=[0.5, None])  # not an int; a NaN component
    records[2]["data"].update(frame_seq=True)
    records[3]["data"].pop("vector")  # and no frame_seq: an older device
    spec = PackageSpec(device.device_id, records)
    assert upload(client, device, spec.package_id, build_package(spec)).status_code == 201
    worker.drain()
    events = client.get("/api/v1/drift/events", params={"device_id": device.device_id},
                        headers=auth(operator_token)).json()["items"]
    by_seq = {e["seq"]: e for e in events}
    assert {seq: e["frame_seq"] for seq, e in by_seq.items()} == {7: 42, 8: None, 9: None, 10: None}
    for seq in (7, 8, 9, 10):
        response = client.post(f"/api/v1/drift/events/{by_seq[seq]['id']}/labels", json={"label": "dog"},
                               headers=auth(operator_token))
        assert response.status_code == 201
    with statements(backends) as seen:
        labels = _beat(client, device)["labels"]
    assert [s for s in seen if s not in ("BEGIN", "COMMIT", "ROLLBACK")] == ["WITH", "SELECT"]
    assert [(label["seq"], label["frame_seq"], label["vector"]) for label in labels] == [
        (7, 42, vector), (8, None, None), (9, None, [0.1, 0.2, 0.3]), (10, None, None)]
    assert labels[0]["drift_event_id"] == by_seq[7]["id"] and labels[0]["label"] == "dog"
    # what the device predicted for that frame, and with which model: the accuracy detector's input
    assert {(label["predicted"], label["model_version"]) for label in labels} == {("cat", "1.0.0")}


def test_a_device_cannot_acknowledge_for_another(client: TestClient, operator_token: str,
                                                 backends: Backends) -> None:
    owner, intruder = enroll(client, operator_token), enroll(client, operator_token)
    event_id = _drift_event(backends, owner.device_id, 1)
    label_id = client.post(f"/api/v1/drift/events/{event_id}/labels", json={"label": "cat"},
                           headers=auth(operator_token)).json()["id"]
    _beat(client, intruder, acked_labels=[label_id])
    assert [item["id"] for item in _beat(client, owner)["labels"]] == [label_id]


def test_invalid_reports_are_422(client: TestClient, operator_token: str) -> None:
    device = enroll(client, operator_token)
    path = f"/api/v1/devices/{device.device_id}/heartbeat"
    for body in ({"outbox_depth": -1}, {"model_version": "x" * 100}, {"acked_labels": ["a"]}):
        assert client.post(path, json=body, headers=device.headers).status_code == 422
