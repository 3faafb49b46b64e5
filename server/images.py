"""Device-sent images: only JPEG and PNG are accepted, and their type is read from their bytes.

A device chooses its blob names, so a name says nothing: `x.html` holding a JPEG is a JPEG, and
`x.jpg` holding markup is rejected. The checked type is stored with the object and served with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from server.errors import InputError

HEAD_BYTES = 16  # enough for the JPEG start-of-image marker and the PNG signature plus its IHDR chunk
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageType:
    """A content type the server stores and serves images as, and the suffix of their object keys."""

    content_type: str
    suffix: str


JPEG = ImageType("image/jpeg", ".jpg")
PNG = ImageType("image/png", ".png")
CONTENT_TYPES = frozenset({JPEG.content_type, PNG.content_type})


def sniff(head: bytes) -> ImageType | None:
    """The type the first bytes prove (JPEG's SOI marker, PNG's signature and IHDR chunk), else None."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
        return PNG
    return None


def check(path: Path) -> ImageType:
    """The checked type of an image file; `InputError` saying how it starts if it is not a JPEG or PNG."""
    with path.open("rb") as source:
        head = source.read(HEAD_BYTES)
    kind = sniff(head)
    if kind is None:
        raise InputError(f"not a JPEG or PNG image (it starts with {head[:8]!r})")
    return kind
