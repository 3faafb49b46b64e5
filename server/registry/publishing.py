"""Publishing: the server half of `tinysphere bundle publish`.

The operator signs the next targets metadata offline; the server checks that every new target is
an uploaded, well-formed bundle whose signed custom fields match its bundle.json (and whose signed file
list names exactly its files, each a published content-addressed target), or such a file target whose
stored bytes match its signed hash; that nothing published before changed or vanished; then stores
targets, bundle rows, snapshot and timestamp at once.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from datetime import UTC, datetime
from typing import IO, Any

from sqlalchemy.orm import Session
from tuf.api.metadata import Metadata, TargetFile, Targets

from server.backends import Backends
from server.db.models import Bundle
from server.errors import ConflictError, InputError
from server.registry import bundle_archive, repository
from server.registry.target_files import BUCKET, TargetFiles, object_key

logger = logging.getLogger(__name__)


def _added(current: Metadata[Targets] | None, new: Metadata[Targets]) -> list[TargetFile]:
    old = current.signed.targets if current else {}
    for path, target in old.items():
        if path not in new.signed.targets:
            raise ConflictError(f"published target {path} cannot be removed", existing=path)
        if new.signed.targets[path].to_dict() != target.to_dict():
            raise ConflictError(f"published target {path} cannot change", existing=path)
    return [target for path, target in new.signed.targets.items() if path not in old]


def _stored(backends: Backends, files: TargetFiles, target: TargetFile, copy: IO[bytes]) -> None:
    """Download the uploaded bytes of `target` into `copy`; `InputError` unless they are the signed ones."""
    sha256 = target.hashes.get("sha256")
    if sha256 is None:
        raise InputError(f"target {target.path} has no sha256 hash")
    key = object_key(target.path, sha256)
    if files.size(key) != target.length:
        raise InputError(f"target {target.path}: uploaded length differs from the signed length")
    backends.store.download(BUCKET, key, copy)
    copy.seek(0)
    digest = hashlib.sha256()
    while chunk := copy.read(1 << 20):
        digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise InputError(f"target {target.path}: stored bytes do not match the signed hash")
    copy.seek(0)


def _manifest(backends: Backends, files: TargetFiles, target: TargetFile, new: Targets) -> dict[str, Any] | None:
    """bundle.json of a new bundle target (None for a file target), after checking what it is signed as."""
    with tempfile.TemporaryFile() as copy:
        _stored(backends, files, target, copy)
        if bundle_archive.is_file_target(target.path):
            if not target.path.split("/")[-1].startswith(target.hashes["sha256"]):
                raise InputError(f"file target {target.path} is not named after its signed sha256")
            return None
        info = bundle_archive.read(copy)
    if info.target_path != target.path:
        raise InputError(f"target {target.path} holds bundle {info.model} {info.version}")
    signed = (target.custom or {}).get("tinymlops") if isinstance(target.custom, dict) else None
    if not isinstance(signed, dict) or signed.get("model") != info.model or signed.get("version") != info.version:
        raise InputError(f"target {target.path}: custom.tinymlops must name model and version of its bundle")
    if "files" in signed:
        _check_file_list(target.path, signed["files"], info, new)
    return info.manifest


def _check_file_list(path: str, listed: Any, info: bundle_archive.BundleInfo, new: Targets) -> None:
    """The signed file list must be the bundle's own files, each published as a target with the same hash."""
    if listed != info.file_list():
        raise InputError(f"target {path}: custom.tinymlops.files does not list the bundle's files and hashes")
    for name, entry in info.file_list().items():
        published = new.targets.get(entry["target"])
        if published is None or published.hashes.get("sha256") != entry["sha256"] or \
                published.length != entry["length"]:
            raise InputError(f"target {path}: its file {name} is not the signed target {entry['target']}")


def publish(backends: Backends, data: bytes, published_by: str, lineage: dict[str, Any] | None = None,
            now: datetime | None = None) -> list[Bundle]:
    """Accept the next signed targets metadata; returns the bundles it adds."""
    now = now or datetime.now(UTC)
    files = TargetFiles(backends.store, backends.settings)
    new = repository.parse(data, Targets)
    with backends.sessions() as session:
        current_row = repository.latest(session, Targets.type)
        current = repository.parse(current_row.body, Targets) if current_row else None
        session.rollback()
    added = _added(current, new)
    manifests = {target.path: _manifest(backends, files, target, new.signed) for target in added}
    with backends.sessions() as session:
        bundles = _commit(session, backends, data, added, manifests, published_by, lineage or {}, now)
    for bundle in bundles:
        logger.info("published %s (%d bytes) by %s", bundle.target_path, bundle.length, published_by)
    return bundles


def _commit(session: Session, backends: Backends, data: bytes, added: list[TargetFile],
            manifests: dict[str, dict[str, Any] | None], published_by: str, lineage: dict[str, Any],
            now: datetime) -> list[Bundle]:
    repository.lock(session)
    root = repository.current_root(session).signed
    current_row = repository.latest(session, Targets.type)
    current = repository.parse(current_row.body, Targets) if current_row else None
    new = repository.accept_targets(session, root, data, now)
    if [t.path for t in _added(current, new)] != [t.path for t in added]:
        raise ConflictError("targets changed meanwhile; sign again")
    bundles = []
    for target in added:
        manifest = manifests[target.path]
        if manifest is None:
            continue  # a file of a bundle: served as a target, catalogued through its bundle
        custom = target.custom if isinstance(target.custom, dict) else {}
        model, version = custom["tinymlops"]["model"], custom["tinymlops"]["version"]
        bundles.append(Bundle(model=model, version=version, target_path=target.path,
                              sha256=target.hashes["sha256"], length=target.length,
                              object_key=object_key(target.path, target.hashes["sha256"]), custom=custom,
                              manifest=manifest, targets_version=new.signed.version,
                              published_by=published_by, lineage=lineage))
    session.add_all(bundles)
    repository.write_snapshot(session, backends.settings, root, now)
    session.commit()
    return bundles
