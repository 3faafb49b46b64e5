"""Publishing: the server half of `tinysphere bundle publish`.

The operator signs the next targets metadata offline; the server checks that every new target is
an uploaded, well-formed bundle whose signed custom fields match its bundle.json, that nothing
published before changed or vanished, then stores targets, bundle rows, snapshot and timestamp at once.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from datetime import UTC, datetime
from typing import Any

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


def _manifest(backends: Backends, files: TargetFiles, target: TargetFile) -> dict[str, Any]:
    sha256 = target.hashes.get("sha256")
    if sha256 is None:
        raise InputError(f"target {target.path} has no sha256 hash")
    key = object_key(target.path, sha256)
    if files.size(key) != target.length:
        raise InputError(f"target {target.path}: uploaded length differs from the signed length")
    with tempfile.TemporaryFile() as copy:
        backends.store.download(BUCKET, key, copy)
        copy.seek(0)
        if hashlib.file_digest(copy, "sha256").hexdigest() != sha256:
            raise InputError(f"target {target.path}: stored bytes do not match the signed hash")
        copy.seek(0)
        info = bundle_archive.read(copy)
    if info.target_path != target.path:
        raise InputError(f"target {target.path} holds bundle {info.model} {info.version}")
    signed = (target.custom or {}).get("tinymlops") if isinstance(target.custom, dict) else None
    if not isinstance(signed, dict) or signed.get("model") != info.model or signed.get("version") != info.version:
        raise InputError(f"target {target.path}: custom.tinymlops must name model and version of its bundle")
    return info.manifest


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
    manifests = {target.path: _manifest(backends, files, target) for target in added}
    with backends.sessions() as session:
        bundles = _commit(session, backends, data, added, manifests, published_by, lineage or {}, now)
    for bundle in bundles:
        logger.info("published %s (%d bytes) by %s", bundle.target_path, bundle.length, published_by)
    return bundles


def _commit(session: Session, backends: Backends, data: bytes, added: list[TargetFile],
            manifests: dict[str, dict[str, Any]], published_by: str, lineage: dict[str, Any],
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
        custom = target.custom if isinstance(target.custom, dict) else {}
        model, version = custom["tinymlops"]["model"], custom["tinymlops"]["version"]
        bundles.append(Bundle(model=model, version=version, target_path=target.path,
                              sha256=target.hashes["sha256"], length=target.length,
                              object_key=object_key(target.path, target.hashes["sha256"]), custom=custom,
                              manifest=manifests[target.path], targets_version=new.signed.version,
                              published_by=published_by, lineage=lineage))
    session.add_all(bundles)
    repository.write_snapshot(session, backends.settings, root, now)
    session.commit()
    return bundles
