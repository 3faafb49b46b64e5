"""Safe unpacking of a bundle tar: plain files at the tar root only, within count and size limits.

Every member is checked before anything is written; extraction then uses tarfile's "data" filter too.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path, PurePosixPath

from device.errors import UnsafeArchiveError
from device.updater.settings import ArchiveLimits

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _member_name(member: tarfile.TarInfo, archive: Path) -> str | None:
    """The file name a member is extracted to; None for the root directory entry; raises for anything else."""
    parts = [p for p in PurePosixPath(member.name).parts if p != "."]
    if not parts and member.isdir():
        return None
    if len(parts) != 1 or not _NAME.match(parts[0]):
        raise UnsafeArchiveError(f"member {member.name!r} is not a plain file name at the tar root", archive)
    if not member.isreg():
        raise UnsafeArchiveError(f"member {member.name!r} is not a regular file", archive)
    return parts[0]


def check_members(tar: tarfile.TarFile, archive: Path, limits: ArchiveLimits) -> list[tuple[tarfile.TarInfo, str]]:
    """Every member of `tar` with its file name, or `UnsafeArchiveError` naming the first offence."""
    chosen: list[tuple[tarfile.TarInfo, str]] = []
    names: set[str] = set()
    total = 0
    for count, member in enumerate(tar, start=1):
        if count > limits.max_members:
            raise UnsafeArchiveError(f"more than {limits.max_members} members", archive)
        name = _member_name(member, archive)
        if name is None:
            continue
        if name in names:
            raise UnsafeArchiveError(f"member {name!r} appears twice", archive)
        if member.size > limits.max_member_bytes:
            raise UnsafeArchiveError(f"member {name!r} is {member.size} bytes, over {limits.max_member_bytes}", archive)
        total += member.size
        if total > limits.max_total_bytes:
            raise UnsafeArchiveError(f"members add up to more than {limits.max_total_bytes} bytes", archive)
        names.add(name)
        chosen.append((member, name))
    return chosen


def extract_bundle(archive: Path, dest: Path, limits: ArchiveLimits) -> list[str]:
    """Unpack the uncompressed tar `archive` into the empty directory `dest`; returns the file names."""
    try:
        with tarfile.open(archive, mode="r:") as tar:
            members = check_members(tar, archive, limits)
            for member, name in members:
                member.name = name
                tar.extract(member, dest, filter="data")
    except (tarfile.TarError, EOFError) as exc:
        raise UnsafeArchiveError(f"not a readable tar: {exc}", archive) from exc
    return [name for _, name in members]
