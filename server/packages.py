"""Receiving sync packages: keep the verified bytes in the `packages` bucket and queue their import.

A package belongs to the device that uploaded it, and is idempotent by `(device_id, package_id)`: the
same device sending the same bytes again is answered "already had it", other bytes under one of its
own ids are a conflict, and another device's id never collides with it. Objects are named by device
and content hash, so a losing racer can never overwrite.
"""

from __future__ import annotations

import logging
from typing import IO

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from server.backends import Backends
from server.db.models import Package
from server.errors import ConflictError
from server.storage import ObjectStore
from server.worker.queue import enqueue_import

logger = logging.getLogger(__name__)


def object_key(device_id: str, package_id: str, sha256: str) -> str:
    """Where a package's bytes live in the `packages` bucket."""
    return f"{device_id}/{package_id}/{sha256}.tar.gz"


def find(session: Session, device_id: str, package_id: str) -> Package | None:
    """The package `package_id` of device `device_id`, if it was stored."""
    return session.get(Package, {"device_id": device_id, "id": package_id})


def _existing(session: Session, device_id: str, package_id: str, sha256: str) -> Package | None:
    package = find(session, device_id, package_id)
    if package is None:
        return None
    if package.sha256 != sha256:
        raise ConflictError(f"package {package_id} of this device exists with other content", existing=package_id)
    return package


def receive(backends: Backends, device_id: str, package_id: str, body: IO[bytes], size: int,
            sha256: str) -> tuple[Package, bool]:
    """Store a verified package body; returns the package and whether it was new."""
    with backends.sessions() as session:
        known = _existing(session, device_id, package_id, sha256)
        if known is not None:
            return known, False
    key = object_key(device_id, package_id, sha256)
    body.seek(0)
    backends.store.put_file("packages", key, body, size, "application/gzip")
    with backends.sessions() as session:
        package = session.scalars(  # the whole row comes back, server defaults included: no second query
            insert(Package)
            .values(id=package_id, device_id=device_id, sha256=sha256, size=size, object_key=key)
            .on_conflict_do_nothing(index_elements=["device_id", "id"])
            .returning(Package)
        ).first()
        if package is None:  # a concurrent upload of the same id by the same device won
            session.rollback()
            return _settle_race(session, backends.store, device_id, package_id, sha256, key)
        enqueue_import(session, device_id, package_id)
        session.commit()
    logger.info("package %s from %s stored (%d bytes)", package_id, device_id, size)
    return package, True


def _settle_race(session: Session, store: ObjectStore, device_id: str, package_id: str, sha256: str,
                 key: str) -> tuple[Package, bool]:
    try:
        known = _existing(session, device_id, package_id, sha256)
    except ConflictError:
        store.remove("packages", key)
        raise
    assert known is not None
    return known, False
