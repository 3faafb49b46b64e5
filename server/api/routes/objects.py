"""Presigned downloads for the local-directory object store (the embedded default)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse

from server.api.deps import BackendsDep
from server.api.errors import ProblemType
from server.api.headers import object_headers
from server.api.openapi import problems
from server.storage import BUCKETS
from server.storage.local import LocalStore

router = APIRouter(prefix="/objects", tags=["objects"])


@router.get("/{bucket}/{key:path}", response_class=FileResponse, responses=problems(ProblemType.forbidden))
def download(
    bucket: str,
    key: str,
    backends: BackendsDep,
    expires: Annotated[int, Query(ge=0, le=2**40)],
    signature: Annotated[str, Query(max_length=128)],
) -> FileResponse:
    """Serve an object if the URL's signature is genuine and unexpired (the signature is the token).

    The content type is the one stored with the object (checked when it was stored), never one
    guessed from the key; only images are shown inline, and always in a sandbox.
    """
    store = backends.store
    if not isinstance(store, LocalStore) or bucket not in BUCKETS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such object")
    if not store.verify(bucket, key, expires, signature):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid or expired signature")
    path = store.path(bucket, key)
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such object")
    content_type = store.content_type(bucket, key)
    return FileResponse(path, media_type=content_type, headers=object_headers(content_type))
