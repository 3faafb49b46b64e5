"""Factories for hostile archives: small files whose tar headers claim (and expand to) far more."""

from __future__ import annotations

import gzip
import tarfile

ZEROS_MEMBER = gzip.compress(bytes(1 << 20), 9)  # 1 MiB of zeros in ~1 KiB; gzip members concatenate


def header_block(kind: bytes, size: int, name: str = "manifest.json") -> bytes:
    """One 512-byte tar header block of type `kind` declaring `size` bytes of content."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def then_zeros(head: bytes, mib: int) -> bytes:
    """`head` followed by `mib` MiB of zeros: a small file that expands to what its header claims."""
    return gzip.compress(head) + ZEROS_MEMBER * mib


def sparse_map_bomb() -> bytes:
    """A GNU sparse 1.0 member: its map (read by tarfile before we see the member) is a million numbers."""
    pax = tarfile.TarInfo("blobs/x")
    pax.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "1"}
    pax.size = 16 << 20
    return gzip.compress(pax.tobuf(format=tarfile.PAX_FORMAT) + b"99999999\n" + b"1\n" * (1 << 20))
