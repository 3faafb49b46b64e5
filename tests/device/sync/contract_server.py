"""A small in-process aiohttp server implementing the sync contract, for the client's unit tests.

It checks what the real server checks about a package (SHA-256 header, manifest first, every listed
file present with its digest and size, nothing else), keeps packages by (device_id, package_id) and
records by (device_id, seq), answers with the device and SHA-256 it stored, and can be told to answer
the next requests with a fault (status, Retry-After, a dropped connection) or a forged acknowledgement.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SECRET = "dev_secret"
TOKEN = "enr_token"
DEVICE_ID = "dev-1"


@dataclass
class Fault:
    status: int = 503
    retry_after: str | None = None
    drop: bool = False  # close the connection without an answer
    request_id: str | None = None  # the X-Request-ID the answer names, as the real server's answers do


@dataclass
class ContractState:
    packages: dict[tuple[str, str], str] = field(default_factory=dict)  # (device_id, package_id) -> sha256
    package_seqs: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    rejected: set[tuple[str, str]] = field(default_factory=set)  # stored, but its seqs overlap another package
    records: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    imports: Counter[tuple[str, int]] = field(default_factory=Counter)  # record imported how often
    faults: list[Fault] = field(default_factory=list)  # applied to the next requests, in order
    acks: list[dict[str, Any]] = field(default_factory=list)  # fields forged into the next package answers
    fault_paths: str = "/api/v1/"  # only requests whose path starts with this get faults
    max_bytes: int = 64 << 20
    labels: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status

    @property
    def seqs(self) -> set[int]:
        return {seq for (_, seq) in self.records}


def _unpack(body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        members = tar.getmembers()
        data = {m.name: tar.extractfile(m).read() for m in members}  # type: ignore[union-attr]
    if not members or members[0].name != "manifest.json":
        raise ValueError("manifest.json must come first")
    manifest = json.loads(data.pop("manifest.json"))
    listed = {f["name"]: f for f in manifest["files"]}
    if set(listed) != set(data):
        raise ValueError(f"members {sorted(data)} differ from the manifest {sorted(listed)}")
    for name, f in listed.items():
        if hashlib.sha256(data[name]).hexdigest() != f["sha256"] or len(data[name]) != f["size"]:
            raise ValueError(f"{name}: digest or size mismatch")
    records = [json.loads(line) for line in data["records.jsonl"].decode().splitlines()]
    if len(records) != manifest["record_count"]:
        raise ValueError("record_count mismatch")
    for r in records:
        if not manifest["seq_first"] <= r["seq"] <= manifest["seq_last"]:
            raise ValueError("record outside the manifest's range")
        if r["blob"] is not None and r["blob"] not in listed:
            raise ValueError("record refers to a missing blob")
    return manifest, records


def _authorized(request: web.Request, token: str = SECRET) -> bool:
    return request.headers.get("Authorization") == f"Bearer {token}"


def build_app(state: ContractState) -> web.Application:
    @web.middleware
    async def faults(request: web.Request, handler: Any) -> web.StreamResponse:
        if state.faults and request.path.startswith(state.fault_paths):
            fault = state.faults.pop(0)
            await request.read()
            if fault.drop:
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError("dropped by the test")
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            if fault.request_id:
                headers["X-Request-ID"] = fault.request_id
            state.requests.append((request.method, request.path, fault.status))
            return web.json_response({"detail": "injected"}, status=fault.status, headers=headers)
        response = await handler(request)
        state.requests.append((request.method, request.path, response.status))
        return response

    async def enroll(request: web.Request) -> web.Response:
        if not _authorized(request, TOKEN):
            return web.json_response({"detail": "bad token"}, status=401)
        return web.json_response({"device_id": DEVICE_ID, "device_secret": SECRET}, status=201)

    async def put_package(request: web.Request) -> web.Response:
        if not _authorized(request):
            return web.json_response({"detail": "unauthorized"}, status=401)
        body = await request.read()
        if len(body) > state.max_bytes:
            return web.json_response({"detail": "too large"}, status=413)
        sha = hashlib.sha256(body).hexdigest()
        if request.headers.get("X-Content-SHA256") != sha:
            return web.json_response({"detail": "digest mismatch"}, status=400)
        key = (DEVICE_ID, request.match_info["package_id"])  # the device the secret belongs to
        if key in state.packages:
            if state.packages[key] != sha:
                return web.json_response({"detail": "other content under this id"}, status=409)
            return _ack(key, sha, 200)
        try:
            manifest, records = _unpack(body)
        except (ValueError, KeyError, tarfile.TarError) as exc:
            return web.json_response({"detail": str(exc)}, status=422)
        if (manifest["device_id"], manifest["package_id"]) != key:
            return web.json_response({"detail": "the manifest names another package"}, status=422)
        seqs = {r["seq"] for r in records}
        overlap = any(seqs & other for k, other in state.package_seqs.items() if k[0] == key[0])
        state.packages[key], state.package_seqs[key] = sha, seqs
        if overlap:  # stored, but its import is refused (the real server rejects it in the worker)
            state.rejected.add(key)
            return _ack(key, sha, 201)
        for r in records:
            state.records[(manifest["device_id"], r["seq"])] = r
            state.imports[(manifest["device_id"], r["seq"])] += 1
        return _ack(key, sha, 201)

    def _ack(key: tuple[str, str], sha: str, status: int) -> web.Response:
        forged = state.acks.pop(0) if state.acks else {}
        return web.json_response({"id": key[1], "device_id": key[0], "sha256": sha, **forged}, status=status)

    async def heartbeat(request: web.Request) -> web.Response:
        if not _authorized(request):
            return web.json_response({"detail": "unauthorized"}, status=401)
        report = await request.json()
        state.heartbeats.append(report)
        acked = set(report.get("acked_labels", []))
        state.labels = [label for label in state.labels if label["id"] not in acked]
        return web.json_response({"desired": {"bundle_version": "2"}, "labels": state.labels})

    app = web.Application(middlewares=[faults], client_max_size=256 << 20)
    app.router.add_post("/api/v1/devices/enroll", enroll)
    app.router.add_put("/api/v1/sync/packages/{package_id}", put_package)
    app.router.add_post("/api/v1/devices/{device_id}/heartbeat", heartbeat)
    return app
