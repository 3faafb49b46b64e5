"""Request bodies to temporary files: streamed, counted against a limit and hashed on the way."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator
from typing import IO

from fastapi import Request

from server.errors import TooLargeError

SPOOL_BYTES = 1 << 20  # bodies up to this size stay in memory, larger ones go to a temporary file


async def spool(request: Request, limit: int, what: str) -> tuple[IO[bytes], int, str]:
    """The body (rewound), its size and SHA-256; `TooLargeError` as soon as it passes `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLargeError(f"{what} is larger than {limit} bytes", limit)
    return await spool_chunks(request.stream(), limit, what)


async def spool_chunks(chunks: AsyncIterator[bytes], limit: int, what: str) -> tuple[IO[bytes], int, str]:
    """Like `spool`, for any async stream of chunks."""
    body = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - returned to the caller
    digest, size = hashlib.sha256(), 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise TooLargeError(f"{what} is larger than {limit} bytes", limit)
            digest.update(chunk)
            body.write(chunk)
    except BaseException:
        body.close()
        raise
    body.seek(0)
    return body, size, digest.hexdigest()
