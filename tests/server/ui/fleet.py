"""A small simulated fleet built through the real APIs: devices, heartbeats, metrics, drift samples, bundles."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from PIL import Image, ImageDraw

from server.backends import Backends
from server.cli import main
from server.registry import keys as registry_keys
from server.registry.client import RegistryClient
from server.registry.console import _publish
from server.worker.runner import Worker
from tests.server.registry.fixtures import bundle_dir
from tests.server.utils import EnrolledDevice, PackageSpec, auth, build_package, drift_record, enroll, record, upload

XSS_NAME = '<img src=x onerror="document.title=\'pwned\'"><b>bold</b>'
GOOD_HEALTH = {"drift_alarm_rate": 1.5, "error_rate": 0.0, "latency_ms_p95": 41.0, "healthy": True}
OLD, NEW = "1.0.0", "1.1.0"
ROLLOUT_TAG = "canary-ui"


@dataclass
class Fleet:
    """What the browser tests look for."""

    devices: dict[str, EnrolledDevice] = field(default_factory=dict)
    event_ids: list[int] = field(default_factory=list)


def digit_jpeg(digit: int) -> bytes:
    """A 64x64 greyscale drift sample showing a digit, as a camera frame would."""
    image = Image.new("L", (64, 64), 0)
    draw = ImageDraw.Draw(image)
    draw.text((22, 14), str(digit), fill=255, font_size=36)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def beat(http: httpx2.Client, device: EnrolledDevice, version: str, state: str, **health: Any) -> dict[str, Any]:
    """One heartbeat; returns the desired state from the response."""
    body = {"model_version": version, "update_state": state, "outbox_depth": 12, "evictions": 0,
            "health": {**GOOD_HEALTH, **health}}
    response = http.post(f"/api/v1/devices/{device.device_id}/heartbeat", json=body, headers=device.headers)
    assert response.status_code == 200, response.text
    return dict(response.json()["desired"])


def _telemetry(http: httpx2.Client, device: EnrolledDevice, events: int) -> None:
    records = []
    for seq in range(1, 41):
        metrics = {"latency_ms_p95": round(38 + 6 * math.sin(seq / 5), 2),
                   "confidence": round(0.92 - 0.3 * (seq > 30) + 0.02 * math.cos(seq), 3),
                   "drift_alarm_rate": round(0.5 + 8.0 * (seq > 30), 2)}
        records.append(record(seq, "metric", {"metrics": metrics}))
    blobs = {}
    for i in range(events):
        name = f"sample-{i}.jpg"
        blobs[name] = digit_jpeg((3 + i) % 10)
        records.append(drift_record(100 + i, f"blobs/{name}"))
    spec = PackageSpec(device.device_id, records, blobs)
    response = upload(http, device, spec.package_id, build_package(spec))  # type: ignore[arg-type]
    assert response.status_code in (200, 201, 202), response.text


def build(http: httpx2.Client, backends: Backends, operator_token: str) -> Fleet:
    """Enroll a handful of devices, report their state and telemetry, and import it."""
    fleet = Fleet()
    plan = [("cam-kitchen", [ROLLOUT_TAG, "lab"], 3), ("cam-door", [ROLLOUT_TAG, "lab"], 1),
            ("cam-garage", [ROLLOUT_TAG], 0), (XSS_NAME, ["lab"], 0), ("cam-attic", ["spare"], 0)]
    for name, tags, events in plan:
        device = enroll(http, operator_token, name=name, tags=tags)  # type: ignore[arg-type]
        fleet.devices[name] = device
        if name != "cam-attic":  # never sends a heartbeat: shows up as offline
            beat(http, device, OLD, "COMMITTED")
        if events:
            _telemetry(http, device, events)
    Worker(backends).drain()
    events = http.get("/api/v1/drift/events", params={"limit": 50}, headers=auth(operator_token)).json()
    fleet.event_ids = sorted(e["id"] for e in events["items"])
    assert len(fleet.event_ids) == 4
    return fleet


def publish_bundles(tmp: Path, keys: Path, url: str, operator_token: str) -> None:
    """Publish the factory bundle as two versions; the second names the MLflow model version it came from."""
    signer = registry_keys.load(keys / "targets.key")
    client = RegistryClient(url, operator_token)
    lineage_new = {"mlflow_model": "digits", "mlflow_version": "7", "mlflow_run_id": "4f1c2a9e0b7d4c3e8a6f",
                   "source": "models:/digits@candidate"}
    for version, lineage in ((OLD, None), (NEW, lineage_new)):
        tar = tmp / f"digits-{version}.tar"
        assert main(["bundle", "build", str(bundle_dir(tmp, version)), "--out", str(tar)]) == 0
        assert _publish(client, tar, signer, 365, lineage) is not None
