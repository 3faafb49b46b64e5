"""Where the device and server halves meet: other bytes claiming delivered seqs change nothing, and
operator labels travel back to the device in heartbeat answers, each acknowledged once.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from device.outbox.records import Record
from device.sync.package import ImagePolicy, build
from tests.e2e.device_run import Device
from tests.e2e.server_proc import ServerDatabase, ServerProcess

pytestmark = pytest.mark.slow
NewDevice = Callable[[], Device]


def _put(server: ServerProcess, secret: str, package_id: str, body: bytes, sha256: str) -> int:
    request = urllib.request.Request(
        f"{server.url}/api/v1/sync/packages/{package_id}", data=body, method="PUT",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/gzip", "X-Content-SHA256": sha256},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_different_package_claiming_delivered_seqs_changes_nothing(
    new_device: NewDevice, server: ServerProcess, server_db: ServerDatabase
) -> None:
    device = new_device()
    assert device.run(frames=30, fps=100) == 0
    device_id, secret = device.device_id, json.loads(device.identity.read_text())["secret"]
    before = server_db.rows("SELECT seq, data FROM records WHERE device_id = :d ORDER BY seq", d=device_id)
    forged = [Record(seq, "log", "2026-01-01T00:00:00+00:00", 1, '{"message":"forged"}', None, 80) for seq in (3, 4)]
    package = build(device_id, forged, lambda _: None, ImagePolicy())
    status = _put(server, secret, package.package_id, package.body, package.sha256)
    assert status in (201, 409)  # refused at once, or stored and then refused by the import
    if status == 201:
        stored = server_db.wait_imported(device_id)
        assert {p["id"]: p["status"] for p in stored}[package.package_id] == "rejected"
    assert server_db.rows("SELECT seq, data FROM records WHERE device_id = :d ORDER BY seq", d=device_id) == before
    assert _put(server, secret, package.package_id, package.body, package.sha256) in (200, 409)  # idempotent


def test_operator_labels_reach_the_device_and_are_acknowledged(
    new_device: NewDevice, server: ServerProcess, server_db: ServerDatabase
) -> None:
    device = new_device()
    assert device.run(frames=80, fps=100) == 0
    events = server_db.rows("SELECT id, seq FROM drift_events WHERE device_id = :d ORDER BY seq", d=device.device_id)
    assert events, "the drift injection produced no drift event"
    request = urllib.request.Request(
        f"{server.url}/api/v1/drift/events/{events[0]['id']}/labels", data=json.dumps({"label": "seven"}).encode(),
        method="POST", headers={"Authorization": f"Bearer {server_db.operator_token()}",
                                "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        label_id = json.loads(response.read())["id"]
    assert device.run(frames=5, fps=100) == 0  # its final heartbeats receive, then acknowledge the label
    assert device.view().labels == [(label_id, events[0]["seq"], "seven")]
    rows = server_db.rows("SELECT delivered_at FROM drift_labels WHERE id = :i", i=label_id)
    assert rows[0]["delivered_at"] is not None
