"""The server's TUF repository in PostgreSQL: every version of every top-level role, byte for byte.

Root and targets arrive signed offline and are only verified here; snapshot and timestamp are
signed with the online keys. Every writer holds one transaction-level advisory lock: a change spans
several roles and inserts new versions numbered from the newest rows, so there is no single row to
lock; the lock is released by commit, rollback or a dropped connection. Publishing waits for it; the
periodic re-signing only tries it, so of replicas refreshing at once one signs and the others skip
(or, coming after its commit, find nothing due): each version is signed once and never forked.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from securesystemslib.signer import CryptoSigner
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, MetaFile, Root, Signed, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from server.config import Settings
from server.db.models import TufMetadata
from server.errors import ConflictError, InputError, NotFoundError, OnlineKeyError, SignatureError
from server.registry import keys

logger = logging.getLogger(__name__)
ROLES = (Root.type, Targets.type, Snapshot.type, Timestamp.type)
_LOCK_ID = 0x7475_6672  # arbitrary: serialises every change to the repository
SignedT = TypeVar("SignedT", Root, Timestamp, Snapshot, Targets)


def lock(session: Session, wait: bool = True) -> bool:
    """Take the repository's write lock for the current transaction; False if busy and not `wait`."""
    if wait:
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        return True
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": _LOCK_ID}))


def latest(session: Session, role: str) -> TufMetadata | None:
    """The newest stored version of a role, or None."""
    return session.scalars(
        select(TufMetadata).where(TufMetadata.role == role).order_by(TufMetadata.version.desc()).limit(1)
    ).first()


def body(session: Session, role: str, version: int | None = None) -> bytes:
    """The bytes of one version of a role (the newest if `version` is None); `NotFoundError` if none."""
    row = latest(session, role) if version is None else session.get(TufMetadata, (role, version))
    if row is None:
        raise NotFoundError(f"no {role} metadata" + (f" version {version}" if version else ""))
    return row.body


def parse(data: bytes, kind: type[SignedT]) -> Metadata[SignedT]:
    """Deserialize metadata of one role type; `SignatureError` if it is malformed or another role."""
    try:
        metadata: Metadata[Any] = Metadata.from_bytes(data)
    except DeserializationError as exc:
        raise SignatureError(f"not valid TUF metadata: {exc}") from exc
    if not isinstance(metadata.signed, kind):
        raise SignatureError(f"expected {kind.type} metadata, got {metadata.signed.type}")
    return metadata


def current_root(session: Session) -> Metadata[Root]:
    """The trusted root; `ConflictError` when the repository has none yet."""
    row = latest(session, Root.type)
    if row is None:
        raise ConflictError("the repository has no root yet: run `tinysphere keys init`")
    return parse(row.body, Root)


def online_signer(settings: Settings, role: str) -> CryptoSigner:
    """The snapshot or timestamp signer from the settings; `OnlineKeyError` if it is not configured."""
    value = settings.tuf_snapshot_key if role == Snapshot.type else settings.tuf_timestamp_key
    path = settings.tuf_snapshot_key_file if role == Snapshot.type else settings.tuf_timestamp_key_file
    try:
        if value is not None:
            return keys.from_pem(value.get_secret_value().encode(), f"the {role} key setting")
        return keys.load(path or Path(settings.data_dir) / "tuf" / f"{role}.key")
    except InputError as exc:
        raise OnlineKeyError(f"online {role} key unavailable: {exc}") from exc


def _store(session: Session, role: str, metadata: Metadata[Any], data: bytes | None = None) -> bytes:
    data = data if data is not None else metadata.to_bytes()
    session.add(TufMetadata(role=role, version=metadata.signed.version, body=data, expires=metadata.signed.expires))
    session.flush()
    return data


def _sign_online(settings: Settings, root: Root, signed: Signed) -> Metadata[Any]:
    metadata: Metadata[Any] = Metadata(signed)
    metadata.sign(online_signer(settings, signed.type))
    try:
        root.verify_delegate(signed.type, metadata.signed_bytes, metadata.signatures)
    except UnsignedMetadataError as exc:
        raise OnlineKeyError(f"the server's {signed.type} key is not the one root names: {exc}") from exc
    logger.info("%s version %d signed", signed.type, signed.version)  # which replica signed, in its log
    return metadata


def _meta_file(version: int, data: bytes) -> MetaFile:
    return MetaFile(version, len(data), {"sha256": hashlib.sha256(data).hexdigest()})


def _next_version(session: Session, role: str) -> int:
    row = latest(session, role)
    return row.version + 1 if row else 1


def _write_timestamp(session: Session, settings: Settings, root: Root, now: datetime) -> None:
    snapshot = latest(session, Snapshot.type)
    if snapshot is None:
        return
    timestamp = Timestamp(version=_next_version(session, Timestamp.type),
                          expires=now + timedelta(seconds=settings.tuf_timestamp_expiry_s),
                          snapshot_meta=_meta_file(snapshot.version, snapshot.body))
    _store(session, Timestamp.type, _sign_online(settings, root, timestamp))


def write_snapshot(session: Session, settings: Settings, root: Root, now: datetime) -> None:
    """Sign a new snapshot naming the newest targets, then a new timestamp (caller holds the lock)."""
    targets = latest(session, Targets.type)
    if targets is None:
        return
    snapshot = Snapshot(version=_next_version(session, Snapshot.type),
                        expires=now + timedelta(seconds=settings.tuf_snapshot_expiry_s),
                        meta={"targets.json": _meta_file(targets.version, targets.body)})
    _store(session, Snapshot.type, _sign_online(settings, root, snapshot))
    _write_timestamp(session, settings, root, now)


def _check_new_root(session: Session, settings: Settings, new: Metadata[Root], now: datetime) -> None:
    previous = latest(session, Root.type)
    old = parse(previous.body, Root).signed if previous else None
    expected = old.version + 1 if old else 1
    if new.signed.version != expected:
        raise ConflictError(f"root version {new.signed.version} given, {expected} expected")
    if not new.signed.consistent_snapshot:
        raise InputError("root must enable consistent snapshots")
    if new.signed.is_expired(now):
        raise InputError("root is already expired")
    result = new.signed.get_root_verification_result(old, new.signed_bytes, new.signatures)
    if not result:
        raise SignatureError(f"root v{new.signed.version} lacks the signatures of the old and new root keys: "
                             f"{len(result.first.signed)}/{result.first.threshold} and "
                             f"{len(result.second.signed)}/{result.second.threshold}")
    for role in (Snapshot.type, Timestamp.type):
        keyid = online_signer(settings, role).public_key.keyid
        if keyid not in new.signed.roles[role].keyids or new.signed.roles[role].threshold != 1:
            raise InputError(f"root must name the server's {role} key {keyid} with threshold 1")


def install_root(session: Session, settings: Settings, root_data: bytes, targets_data: bytes | None,
                 now: datetime | None = None) -> int:
    """Accept the next root version (and targets re-signed for it, if its targets keys changed)."""
    now = now or datetime.now(UTC)
    new = parse(root_data, Root)
    lock(session)
    _check_new_root(session, settings, new, now)
    _store(session, Root.type, new, root_data)
    current = latest(session, Targets.type)
    if targets_data is not None:
        accept_targets(session, new.signed, targets_data, now)
    elif current is not None:
        _verify_targets(new.signed, parse(current.body, Targets))
    write_snapshot(session, settings, new.signed, now)
    logger.info("root version %d installed", new.signed.version)
    return new.signed.version


def _verify_targets(root: Root, targets: Metadata[Targets]) -> None:
    try:
        root.verify_delegate(Targets.type, targets.signed_bytes, targets.signatures)
    except UnsignedMetadataError as exc:
        raise SignatureError(f"targets metadata is not signed by the targets key(s) root names: {exc}") from exc


def accept_targets(session: Session, root: Root, data: bytes, now: datetime) -> Metadata[Targets]:
    """Verify and store the next targets version (caller holds the lock; snapshot follows)."""
    new = parse(data, Targets)
    expected = _next_version(session, Targets.type)
    if new.signed.version != expected:
        raise ConflictError(f"targets version {new.signed.version} given, {expected} expected; fetch the "
                            "current targets metadata and sign again")
    if new.signed.is_expired(now):
        raise InputError("targets metadata is already expired")
    if new.signed.delegations is not None:
        raise InputError("delegated targets roles are not supported")
    _verify_targets(root, new)
    _store(session, Targets.type, new, data)
    return new


def refresh_online(session: Session, settings: Settings, now: datetime | None = None) -> bool:
    """Re-sign snapshot/timestamp once less than half their lifetime is left; False if nothing was due."""
    now = now or datetime.now(UTC)
    if not lock(session, wait=False):
        return False
    snapshot, timestamp = latest(session, Snapshot.type), latest(session, Timestamp.type)
    if snapshot is None or timestamp is None:
        return False
    root = current_root(session).signed
    if snapshot.expires - now < timedelta(seconds=settings.tuf_snapshot_expiry_s / 2):
        write_snapshot(session, settings, root, now)
    elif timestamp.expires - now < timedelta(seconds=settings.tuf_timestamp_expiry_s / 2):
        _write_timestamp(session, settings, root, now)
    else:
        return False
    return True
