"""Bundle tar files: built deterministically from a bundle directory, read back and checked.

A bundle tar holds one directory's files at its root, regular files only, sorted, with mtime and
owner zeroed, so the same directory always gives the same bytes (and the same TUF target hash).
Each file is also published on its own as a content-addressed target (`file_target_path`), listed by the
bundle target's signed custom field, so a device fetches only the files it does not have.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from contract.bundle import BUNDLE_FILES, load_bundle
from contract.errors import BundleError
from server.errors import InputError

TARGET_NAME = "bundle.tar"
FILES_DIR = "files"  # <model>/files/<sha256><suffix>: one target per distinct file content of a model
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_MAX_MANIFEST_BYTES = 1 << 20


@dataclass(frozen=True)
class BundleInfo:
    """What the registry needs to know about a bundle tar."""

    model: str
    version: str
    manifest: dict[str, Any]  # bundle.json
    members: dict[str, tuple[str, int]] = field(default_factory=dict)  # file name -> (sha256, length), from a tar

    @property
    def target_path(self) -> str:
        """The TUF target path: `<model>/<version>/bundle.tar`."""
        return f"{self.model}/{self.version}/{TARGET_NAME}"

    def file_list(self) -> dict[str, dict[str, Any]]:
        """The signed list of the bundle's files: name -> sha256, length and the file's own target path."""
        return {name: {"sha256": sha256, "length": length, "target": file_target_path(self.model, name, sha256)}
                for name, (sha256, length) in sorted(self.members.items())}

    def custom(self, with_files: bool = True) -> dict[str, Any]:
        """The target's custom field the device updater checks before installing (with the file list, if known)."""
        tensor = self.manifest.get("input") or {}
        spec: dict[str, Any] = {
            "model": self.model, "version": self.version,
            "input_shape": list(tensor.get("shape") or []), "input_dtype": str(tensor.get("dtype", "")),
            "runtime": dict(self.manifest.get("runtime") or {}),
            "device_types": list(self.manifest.get("device_types") or []),
        }
        if with_files and self.members:
            spec["files"] = self.file_list()
        return {"tinymlops": spec}


def file_target_path(model: str, name: str, sha256: str) -> str:
    """The content-addressed target of one bundle file: `<model>/files/<sha256><suffix of name>`."""
    return f"{model}/{FILES_DIR}/{sha256}{Path(name).suffix}"


def is_file_target(path: str) -> bool:
    """True for a target path of the `file_target_path` form."""
    return re.fullmatch(rf"[^/]+/{FILES_DIR}/[0-9a-f]{{64}}(\.[A-Za-z0-9]+)?", path) is not None


def check_name(value: object, what: str) -> str:
    """A model name or version usable as one path segment."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise InputError(f"{what} {value!r} must match {_NAME.pattern}")
    return value


def info_from_manifest(manifest: dict[str, Any]) -> BundleInfo:
    """Model and version from a bundle.json, checked."""
    return BundleInfo(check_name(manifest.get("name"), "bundle name"),
                      check_name(manifest.get("version"), "bundle version"), manifest)


def build(directory: Path, out: IO[bytes]) -> BundleInfo:
    """Write the tar of a bundle directory (validated first) to `out`."""
    try:  # the contract's check: what a device accepts, we ship
        bundle = load_bundle(directory)
    except BundleError as exc:
        raise InputError(str(exc)) from exc
    info = info_from_manifest(bundle.meta)
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(BUNDLE_FILES):
            data = (directory / name).read_bytes()
            member = tarfile.TarInfo(name)
            member.size, member.mtime, member.mode = len(data), 0, 0o644
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            tar.addfile(member, io.BytesIO(data))
    return info


def read(source: IO[bytes]) -> BundleInfo:
    """Check a bundle tar (members, sizes, the SHA-256s bundle.json lists) and return its info."""
    digests: dict[str, str] = {}
    sizes: dict[str, int] = {}
    manifest_bytes = b""
    try:
        with tarfile.open(fileobj=source, mode="r:") as tar:
            for member in tar:
                if not member.isreg() or member.name not in BUNDLE_FILES or member.name in digests:
                    raise InputError(f"unexpected member {member.name!r} in bundle tar")
                stream = tar.extractfile(member)
                assert stream is not None
                digest = hashlib.sha256()
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
                    if member.name == "bundle.json" and len(manifest_bytes) < _MAX_MANIFEST_BYTES:
                        manifest_bytes += chunk
                digests[member.name] = digest.hexdigest()
                sizes[member.name] = member.size
    except tarfile.TarError as exc:
        raise InputError(f"not a bundle tar: {exc}") from exc
    info = _checked(manifest_bytes, digests)
    return BundleInfo(info.model, info.version, info.manifest, {n: (digests[n], sizes[n]) for n in digests})


def extract(tar: Path, dest: Path) -> dict[str, Path]:
    """Unpack a bundle tar (checked by `read` first) into the directory `dest`; name -> path of each file."""
    with tar.open("rb") as source:
        read(source)
    with tarfile.open(tar, mode="r:") as archive:
        archive.extractall(dest, filter="data")
    return {name: dest / name for name in BUNDLE_FILES}


def _checked(manifest_bytes: bytes, digests: dict[str, str]) -> BundleInfo:
    missing = sorted(set(BUNDLE_FILES) - set(digests))
    if missing:
        raise InputError(f"bundle tar lacks {missing}")
    try:
        manifest = json.loads(manifest_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"bundle.json is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise InputError("bundle.json must be a JSON object")
    listed = manifest.get("files") or {}
    for name in BUNDLE_FILES[1:]:
        if listed.get(name) != digests[name]:
            raise InputError(f"{name} does not match the SHA-256 in bundle.json")
    return info_from_manifest(manifest)
