"""A TUF repository built with `tuf.api.metadata` and served over loopback HTTP, like the fleet server will:
consistent snapshots, hash-prefixed targets, HTTP Range, bearer auth - plus knobs to attack the device.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

SECRET = "device-secret-1"
ROLES = (Root.type, Timestamp.type, Snapshot.type, Targets.type)


def bundle_tar(bundle_dir: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """The bundle directory's files at the tar root, as the server ships them."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(bundle_dir.iterdir()):
            tar.add(path, arcname=path.name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def custom_field(bundle_dir: Path, **changes: Any) -> dict[str, Any]:
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    field = {"model": meta["name"], "version": meta["version"], "input_shape": meta["input"]["shape"],
             "input_dtype": meta["input"]["dtype"], "runtime": meta.get("runtime", {}),
             "device_types": meta.get("device_types", [])}
    return {"tinymlops": {**field, **changes}}


def file_list(bundle_dir: Path) -> dict[str, dict[str, Any]]:
    """The signed file list of a bundle directory, each file a content-addressed target, as the server signs it."""
    model = json.loads((bundle_dir / "bundle.json").read_text())["name"]
    listed = {}
    for path in sorted(bundle_dir.iterdir()):
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        listed[path.name] = {"sha256": sha256, "length": path.stat().st_size,
                             "target": f"{model}/files/{sha256}{path.suffix}"}
    return listed


def add_bundle(repo: TufRepo, target: str, bundle_dir: Path, files: dict[str, Any] | None = None,
               **changes: Any) -> dict[str, Any]:
    """Publish a bundle as the server does: each file as its own target, the tar naming them in its custom field
    (`files`: the list to sign instead of the true one). Returns the signed list; call `repo.publish()` after."""
    for name, entry in file_list(bundle_dir).items():
        repo.add_target(entry["target"], (bundle_dir / name).read_bytes())
    listed = file_list(bundle_dir) if files is None else files
    custom = custom_field(bundle_dir, **changes)
    custom["tinymlops"]["files"] = listed
    repo.add_target(target, bundle_tar(bundle_dir), custom)
    return listed


class TufRepo:
    """Top-level metadata in memory; `publish()` signs a new consistent snapshot."""

    def __init__(self, root_threshold: int = 1, targets_threshold: int = 1, expires_days: float = 7) -> None:
        self.signers: dict[str, list[Signer]] = {}
        self.expiry = datetime.now(UTC).replace(microsecond=0) + timedelta(days=expires_days)
        self.root = Metadata(Root(expires=self.expiry, consistent_snapshot=True))
        self.timestamp = Metadata(Timestamp(expires=self.expiry))
        self.snapshot = Metadata(Snapshot(expires=self.expiry))
        self.targets = Metadata(Targets(expires=self.expiry))
        counts = {Root.type: max(root_threshold, 1), Targets.type: max(targets_threshold, 1)}
        for role in ROLES:
            self.signers[role] = []
            for _ in range(counts.get(role, 1)):
                self.add_key(role)
        self.root.signed.roles[Root.type].threshold = root_threshold
        self.root.signed.roles[Targets.type].threshold = targets_threshold
        self.files: dict[str, bytes] = {}  # served under /tuf/metadata/ and /tuf/targets/
        self.targets.signed.version = 0
        self.snapshot.signed.version = 0
        self.timestamp.signed.version = 0
        self.root_bytes = self._sign(self.root, Root.type)
        self.files[f"metadata/{self.root.signed.version}.root.json"] = self.root_bytes
        self.publish()

    def add_key(self, role: str) -> Signer:
        signer = CryptoSigner.generate_ed25519()
        self.root.signed.add_key(signer.public_key, role)
        self.signers[role].append(signer)
        return signer

    def _sign(self, md: Metadata[Any], role: str, signers: list[Signer] | None = None) -> bytes:
        md.signatures.clear()
        for signer in self.signers[role] if signers is None else signers:
            md.sign(signer, append=True)
        return md.to_bytes(JSONSerializer(compact=True))

    def add_target(self, path: str, data: bytes, custom: dict[str, Any] | None = None) -> TargetFile:
        info = TargetFile.from_data(path, data, ["sha256"])
        if custom is not None:
            info.unrecognized_fields["custom"] = custom
        self.targets.signed.targets[path] = info
        directory, _, name = path.rpartition("/")
        self.files[f"targets/{directory}/{info.hashes['sha256']}.{name}"] = data
        return info

    def target_url_path(self, path: str) -> str:
        info = self.targets.signed.targets[path]
        directory, _, name = path.rpartition("/")
        return f"targets/{directory}/{info.hashes['sha256']}.{name}"

    def publish(self, targets_signers: list[Signer] | None = None, timestamp_expires: datetime | None = None) -> None:
        """New targets -> snapshot -> timestamp versions, signed and served."""
        self.targets.signed.version += 1
        data = self._sign(self.targets, Targets.type, targets_signers)
        self.files[f"metadata/{self.targets.signed.version}.targets.json"] = data
        self.snapshot.signed.version += 1
        self.snapshot.signed.meta["targets.json"] = MetaFile(self.targets.signed.version)
        data = self._sign(self.snapshot, Snapshot.type)
        self.files[f"metadata/{self.snapshot.signed.version}.snapshot.json"] = data
        self.timestamp.signed.version += 1
        self.timestamp.signed.snapshot_meta = MetaFile(self.snapshot.signed.version)
        self.timestamp.signed.expires = timestamp_expires or self.expiry
        self.files["metadata/timestamp.json"] = self._sign(self.timestamp, Timestamp.type)

    def rotate_root(self) -> None:
        self.root.signed.version += 1
        self.root_bytes = self._sign(self.root, Root.type)
        self.files[f"metadata/{self.root.signed.version}.root.json"] = self.root_bytes


class Mirror:
    """Serves a `TufRepo` at http://127.0.0.1:port/tuf/; knobs: `cut_at`, `extra_bytes`, `ignore_range`."""

    def __init__(self, repo: TufRepo) -> None:
        self.repo = repo
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_at: list[int] = []  # absolute offsets at which the next target responses stop short
        self.extra_bytes = b""  # appended to every target body (endless data)
        self.ignore_range = False
        self.target_status: list[int] = []  # answered (one each) to the next target requests instead of the body
        self.on_request: Callable[[str], None] | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Mirror:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                mirror.requests.append((self.path, self.headers.get("Range")))
                if mirror.on_request:
                    mirror.on_request(self.path)
                if self.headers.get("Authorization") != f"Bearer {SECRET}":
                    return self._send(401, b"no")
                key = self.path.removeprefix("/tuf/")
                data = mirror.repo.files.get(key)
                if data is None:
                    return self._send(404, b"not found")
                if key.startswith("targets/") and mirror.target_status:
                    return self._send(mirror.target_status.pop(0), b"unavailable")
                if key.startswith("targets/"):
                    return self._target(data + mirror.extra_bytes)
                return self._send(200, data)

            def _target(self, data: bytes) -> None:
                start, code = 0, 200
                ranged = self.headers.get("Range")
                if ranged and not mirror.ignore_range:
                    start = int(ranged.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        return self._send(416, b"")
                    code = 206
                body = data[start:]
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                if code == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                cut = next((c for c in mirror.cut_at if c > start), None)
                if cut is not None:
                    mirror.cut_at.remove(cut)
                    self.wfile.write(body[: cut - start])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler
