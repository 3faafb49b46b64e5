"""A new slot assembled file by file: what the live (or the other) slot already holds is copied, the rest
is fetched as signed, content-addressed targets; every byte that lands in the slot is hashed on the way.

Nothing here writes outside the staging directory, so an interruption at any point leaves the slots as they
were; the staging directory is removed on the next start and the round begins again (downloads resume).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from contract.bundle import REQUIRED_FILES
from device.errors import UpdateRejectedError
from device.updater.target import FileEntry

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
Fetch = Callable[[FileEntry], Path]  # the verified local copy of a file target


@dataclass
class Assembly:
    """What one assembled slot took from where."""

    reused: list[str]
    fetched: list[str]
    fetched_bytes: int = 0


def copy_verified(source: Path, dest: Path, entry: FileEntry) -> bool:
    """Copy `source` to `dest`, hashing what is written; False (and no `dest`) unless it is exactly `entry`."""
    try:
        if source.stat().st_size != entry.length:
            return False
        digest = hashlib.sha256()
        with source.open("rb") as src, dest.open("wb") as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except FileNotFoundError:
        dest.unlink(missing_ok=True)
        return False
    if digest.hexdigest() != entry.sha256:
        dest.unlink(missing_ok=True)
        return False
    return True


def assemble(staging: Path, files: dict[str, FileEntry], sources: Sequence[Path], fetch: Fetch) -> Assembly:
    """Fill the empty `staging` with the listed files: from `sources` when a copy matches, else `fetch`ed."""
    done = Assembly([], [])
    for name, entry in sorted(files.items()):
        dest = staging / name
        if any(copy_verified(source / name, dest, entry) for source in sources):
            done.reused.append(name)
            continue
        if not copy_verified(fetch(entry), dest, entry):  # fetch verified it; a changed cache file is caught
            raise UpdateRejectedError(f"{entry.target}: the downloaded file does not hash to the signed "
                                      f"{entry.sha256[:12]}…", "hash_mismatch")
        done.fetched.append(name)
        done.fetched_bytes += entry.length
    check_file_list(staging, files)
    log.info("slot assembled: %d file(s) kept (%s), %d fetched (%s, %d bytes)", len(done.reused),
             ", ".join(done.reused), len(done.fetched), ", ".join(done.fetched), done.fetched_bytes)
    return done


def check_file_list(staging: Path, files: dict[str, FileEntry]) -> None:
    """bundle.json must list every file with the hash the signed file list gives it."""
    try:
        listed = json.loads((staging / "bundle.json").read_text()).get("files")
    except (OSError, ValueError, AttributeError) as exc:
        raise UpdateRejectedError(f"bundle.json of the signed file list is unreadable: {exc}", "file_list_mismatch",
                                  retry=False) from exc
    for name in REQUIRED_FILES:
        said = listed.get(name) if isinstance(listed, dict) else None
        if said != files[name].sha256:
            raise UpdateRejectedError(
                f"bundle.json lists {name} as {str(said)[:12]}…, the signed file list as {files[name].sha256[:12]}…: "
                "files of different bundles", "file_list_mismatch", retry=False)
