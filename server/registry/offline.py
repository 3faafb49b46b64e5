"""The operator's offline side: key directory, root versions, and signing targets metadata.

A key directory holds `root-<keyid>.key` files, `targets.key`, the online `snapshot.key` and
`timestamp.key` (to install on the server, then remove here), and every root version as `<N>.root.json`
plus `root.json`, the newest (what devices pin). A development key set (made by the zero-configuration
server for itself) is such a directory with one root key and a `development.json` marker naming its keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, TargetFile, Targets

from server.errors import InputError
from server.registry import keys, repository
from server.registry.bundle_archive import BundleInfo

ONLINE_ROLES = ("snapshot", "timestamp")
DEVELOPMENT_MARKER = "development.json"


def _expiry(days: int) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def _write_root(directory: Path, root: Metadata[Root]) -> bytes:
    data = root.to_bytes()
    keys.write_atomic(directory / f"{root.signed.version}.root.json", data)
    keys.write_atomic(directory / "root.json", data)
    return data


def _new_root_keys(directory: Path, count: int) -> list[CryptoSigner]:
    signers = [keys.generate() for _ in range(count)]
    for signer in signers:
        keys.write_private(directory / f"root-{signer.public_key.keyid[:16]}.key", signer)
    return signers


def init(directory: Path, root_keys: int = 3, root_threshold: int = 2, expires_days: int = 365) -> bytes:
    """Create every key and root version 1 (signed by all root keys); returns root.json's bytes."""
    if not 1 <= root_threshold <= root_keys:
        raise InputError(f"root threshold must be between 1 and {root_keys}")
    if (directory / "root.json").exists():
        raise InputError(f"{directory} already holds a repository's keys")
    directory.mkdir(parents=True, exist_ok=True)
    root_signers = _new_root_keys(directory, root_keys)
    root = Root(version=1, expires=_expiry(expires_days), consistent_snapshot=True)
    for signer in root_signers:
        root.add_key(signer.public_key, Root.type)
    root.roles[Root.type].threshold = root_threshold
    for role in (Targets.type, *ONLINE_ROLES):
        signer = keys.generate()
        keys.write_private(directory / f"{role}.key", signer)
        root.add_key(signer.public_key, role)
    metadata = Metadata(root)
    for signer in root_signers:
        metadata.sign(signer, append=True)
    return _write_root(directory, metadata)


def init_development(directory: Path) -> None:
    """Create a development key set at `directory` (which must not hold keys), all at once: built beside it,
    marked, then renamed into place, so a crash leaves either no set or a whole one."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        init(staging, root_keys=1, root_threshold=1)
        keyids = sorted(keys.load(path).public_key.keyid for path in staging.glob("*.key"))
        marker = {"development": True, "keyids": keyids,
                  "warning": "development keys: anyone holding this directory can sign updates for the fleet; "
                             "make real ones with `tinysphere keys init` (docs/registry.md)"}
        keys.write_atomic(staging / DEVELOPMENT_MARKER, json.dumps(marker, indent=2).encode() + b"\n")
        os.rename(staging, directory)  # also replaces an empty directory
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def development_keyids(directory: Path) -> set[str]:
    """The key ids of the development key set in `directory` (none when it holds no such set)."""
    try:
        marker = json.loads((directory / DEVELOPMENT_MARKER).read_bytes())
    except (OSError, ValueError):
        return set()
    return set(marker.get("keyids", [])) if isinstance(marker, dict) else set()


def empty_targets(directory: Path) -> bytes:
    """Targets version 1 listing nothing, signed with the key directory's targets key."""
    empty = Metadata(Targets())
    empty.signed.version = 0  # sign_targets makes it version 1
    return sign_targets(empty, keys.load(directory / "targets.key"))


def current_root(directory: Path) -> Metadata[Root]:
    """The newest root version in a key directory."""
    try:
        return repository.parse((directory / "root.json").read_bytes(), Root)
    except OSError as exc:
        raise InputError(f"no root.json in {directory}: {exc}") from exc


def _root_signers(directory: Path, root: Root) -> list[CryptoSigner]:
    found = [keys.load(path) for path in sorted(directory.glob("root-*.key"))]
    signers = [s for s in found if s.public_key.keyid in root.roles[Root.type].keyids]
    if len(signers) < root.roles[Root.type].threshold:
        raise InputError(f"{directory} holds {len(signers)} of the {root.roles[Root.type].threshold} root keys "
                         "needed")
    return signers


def _retire(directory: Path, path: Path, keyid: str) -> None:
    retired = directory / "retired"
    retired.mkdir(mode=0o700, exist_ok=True)
    path.replace(retired / f"{path.stem}-{keyid[:16]}.key")


def rotate_root(directory: Path, root_keys: int, root_threshold: int, expires_days: int = 365) -> bytes:
    """Root version N+1 with fresh root keys, signed by the old and the new ones; old keys retired."""
    current = current_root(directory)
    old_signers = _root_signers(directory, current.signed)
    root = current.signed
    for keyid in list(root.roles[Root.type].keyids):
        root.revoke_key(keyid, Root.type)
    new_signers = _new_root_keys(directory, root_keys)
    for signer in new_signers:
        root.add_key(signer.public_key, Root.type)
    root.roles[Root.type].threshold = root_threshold
    root.version += 1
    root.expires = _expiry(expires_days)
    metadata = Metadata(root)
    for signer in old_signers + new_signers:
        metadata.sign(signer, append=True)
    for signer in old_signers:
        path = directory / f"root-{signer.public_key.keyid[:16]}.key"
        _retire(directory, path, signer.public_key.keyid)
    return _write_root(directory, metadata)


def rotate_targets(directory: Path, current_targets: bytes | None,
                   expires_days: int = 365) -> tuple[bytes, bytes | None]:
    """Root N+1 naming a fresh targets key, and the current targets re-signed with it (if any)."""
    current = current_root(directory)
    signers = _root_signers(directory, current.signed)
    root = current.signed
    old_key = keys.load(directory / "targets.key")
    for keyid in list(root.roles[Targets.type].keyids):
        root.revoke_key(keyid, Targets.type)
    new_key = keys.generate()
    root.add_key(new_key.public_key, Targets.type)
    root.version += 1
    root.expires = _expiry(expires_days)
    metadata = Metadata(root)
    for signer in signers:
        metadata.sign(signer, append=True)
    targets = None
    if current_targets is not None:
        targets = sign_targets(repository.parse(current_targets, Targets), new_key, expires_days)
    _retire(directory, directory / "targets.key", old_key.public_key.keyid)
    keys.write_private(directory / "targets.key", new_key)
    return _write_root(directory, metadata), targets


def target_file(info: BundleInfo, data_path: Path) -> TargetFile:
    """The TUF target entry of a bundle tar, with the custom fields devices check (and the signed file list
    when `info` came from `bundle_archive.read`)."""
    with data_path.open("rb") as source:
        sha256 = hashlib.file_digest(source, "sha256").hexdigest()
    length = data_path.stat().st_size
    return TargetFile(length, {"sha256": sha256}, info.target_path, unrecognized_fields={"custom": info.custom()})


def file_targets(info: BundleInfo) -> list[TargetFile]:
    """The content-addressed target of each of the bundle's files, as its signed file list names them."""
    return [TargetFile(entry["length"], {"sha256": entry["sha256"]}, entry["target"])
            for entry in info.file_list().values()]


def sign_targets(current: Metadata[Targets], signer: CryptoSigner, expires_days: int = 365) -> bytes:
    """The next version of `current`, signed by `signer` alone."""
    current.signed.version += 1
    current.signed.expires = _expiry(expires_days)
    current.signatures.clear()
    current.sign(signer)
    return current.to_bytes()


def add_target(current_targets: bytes | None, target: TargetFile, signer: CryptoSigner,
               expires_days: int = 365, files: list[TargetFile] | None = None) -> bytes | None:
    """Targets metadata with `target` (and the file targets it lists, those not published yet) added and
    signed; None if `target` is already published unchanged."""
    current = repository.parse(current_targets, Targets) if current_targets else Metadata(Targets())
    if current_targets is None:
        current.signed.version = 0  # sign_targets makes it version 1
    existing = current.signed.targets.get(target.path)
    if existing is not None:
        if existing.hashes == target.hashes and existing.length == target.length:
            return None
        raise InputError(f"{target.path} is already published with other content; bump the bundle version")
    for file in files or []:
        published = current.signed.targets.get(file.path)
        if published is not None and (published.hashes, published.length) != (file.hashes, file.length):
            raise InputError(f"{file.path} is already published with other content")  # content-addressed: never
        current.signed.targets.setdefault(file.path, file)
    current.signed.targets[target.path] = target
    return sign_targets(current, signer, expires_days)


def new_files(current_targets: bytes | None, files: list[TargetFile]) -> list[TargetFile]:
    """The file targets not published yet (a file unchanged since an earlier bundle is uploaded once)."""
    current = repository.parse(current_targets, Targets).signed.targets if current_targets else {}
    return [file for file in files if file.path not in current]
