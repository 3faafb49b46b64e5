"""Factories for the server tests: packages (good and malicious), enrolled devices, auth headers, heartbeats."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")  # a tiny JPEG-framed blob
GOOD_HEALTH = {"drift_alarm_rate": 1.0, "error_rate": 0.0, "latency_ms_p95": 40.0, "healthy": True}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class EnrolledDevice:
    device_id: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.secret)


def beat(client: TestClient, device: EnrolledDevice, version: str, state: str, **health: Any) -> dict[str, Any]:
    """A heartbeat on `version` in update state `state`, healthy but for `health`; the desired state it returns."""
    body = {"model_version": version, "update_state": state, "health": {**GOOD_HEALTH, **health}}
    response = client.post(f"/api/v1/devices/{device.device_id}/heartbeat", json=body, headers=device.headers)
    assert response.status_code == 200, response.text
    return dict(response.json()["desired"])


def enroll(client: TestClient, operator_token: str, name: str | None = None,
           tags: list[str] | None = None) -> EnrolledDevice:
    """Enroll a new device through the API (enrollment token, then enroll)."""
    response = client.post("/api/v1/enrollment-tokens", json={"tags": tags or []}, headers=auth(operator_token))
    assert response.status_code == 201, response.text
    token = response.json()["token"]
    body = {"name": name, "hardware": {"model": "Raspberry Pi Zero 2 W", "ram_mb": 512}}
    response = client.post("/api/v1/devices/enroll", json=body, headers=auth(token))
    assert response.status_code == 201, response.text
    data = response.json()
    return EnrolledDevice(data["device_id"], data["device_secret"])


def record(seq: int, kind: str, data: dict[str, Any], blob: str | None = None) -> dict[str, Any]:
    return {"seq": seq, "kind": kind, "ts": datetime.now(UTC).isoformat(), "priority": 0, "data": data,
            "blob": blob}


def drift_record(seq: int, blob: str | None = None, detector: str = "knn_distance") -> dict[str, Any]:
    data = {"detector": detector, "statistic": 3.5, "threshold": 2.0, "model_version": "1.0.0",
            "label": "cat", "confidence": 0.41, "vector": [0.1, 0.2, 0.3]}
    return record(seq, "drift_event", data, blob)


@dataclass
class PackageSpec:
    """A package to build; defaults make a valid one."""

    device_id: str
    records: list[dict[str, Any]]
    blobs: dict[str, bytes] = field(default_factory=dict)
    package_id: str = field(default_factory=lambda: f"pkg-{uuid.uuid4().hex[:12]}")
    manifest_overrides: dict[str, Any] = field(default_factory=dict)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def manifest_for(spec: PackageSpec, files: dict[str, bytes]) -> dict[str, Any]:
    seqs = [r["seq"] for r in spec.records] or [0]
    manifest = {
        "format": 1, "package_id": spec.package_id, "device_id": spec.device_id,
        "seq_first": min(seqs), "seq_last": max(seqs), "record_count": len(spec.records),
        "created": datetime.now(UTC).isoformat(),
        "files": [{"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                   "kind": "records" if name == "records.jsonl" else "blob"} for name, data in files.items()],
    }
    manifest.update(spec.manifest_overrides)
    return manifest


def build_package(spec: PackageSpec) -> bytes:
    """A tar.gz in the sync package format."""
    records = "".join(json.dumps(r) + "\n" for r in spec.records).encode()
    files = {"records.jsonl": records, **{f"blobs/{name}": data for name, data in spec.blobs.items()}}
    manifest = manifest_for(spec, files)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        _add(tar, "manifest.json", json.dumps(manifest).encode())
        for name, data in files.items():
            _add(tar, name, data)
    return buffer.getvalue()


def raw_tar(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    """A tar.gz of arbitrary members (for the malicious cases)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                _add(tar, *member)
    return buffer.getvalue()


def upload(client: TestClient, device: EnrolledDevice, package_id: str, body: bytes,
           sha256: str | None = None) -> Any:
    headers = {**device.headers, "X-Content-SHA256": sha256 or hashlib.sha256(body).hexdigest(),
               "Content-Type": "application/gzip"}
    return client.put(f"/api/v1/sync/packages/{package_id}", content=body, headers=headers)


def sign_in(client: TestClient, token: str) -> None:
    """Sign `client` in to the dashboard with `token`, as the login form does (CSRF included)."""
    form = client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = client.post("/ui/login", data={"token": token, "csrf": csrf.group(1), "next": "/ui/"},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text
