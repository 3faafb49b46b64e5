"""`/tuf`: the TUF repository over HTTP for devices (and operators): metadata and target files.

Consistent snapshots: `{N}.root.json`, `timestamp.json`, `{N}.snapshot.json`, `{N}.targets.json`,
and targets as `<dir>/<sha256>.<name>`, streamed from the `bundles` bucket with single-range support.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Path, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from server.api.deps import BackendsDep, CallerDep, SessionDep
from server.api.errors import ProblemType
from server.api.openapi import problems
from server.errors import NotFoundError
from server.registry import repository
from server.registry.target_files import ByteRange, TargetFiles, object_key, parse_range

router = APIRouter(prefix="/tuf", tags=["tuf"])
_VERSIONED = re.compile(r"^([1-9][0-9]{0,8})\.(root|snapshot|targets)\.json$")
_TARGET = re.compile(r"^(?:(.+)/)?([0-9a-f]{64})\.([^/]+)$")


@router.get("/metadata/{name}", response_class=Response)
def metadata(name: Annotated[str, Path(max_length=64)], session: SessionDep, _: CallerDep) -> Response:
    """One metadata file, byte for byte as signed (`root.json` is the newest root)."""
    if name in ("timestamp.json", "root.json"):
        data = repository.body(session, name.removesuffix(".json"))
    else:
        match = _VERSIONED.match(name)
        if match is None:
            raise NotFoundError(f"no metadata {name}")
        data = repository.body(session, match.group(2), int(match.group(1)))
    session.rollback()
    return Response(data, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/targets/{path:path}", response_class=StreamingResponse,
            responses={206: {"description": "a range"}, **problems(ProblemType.range_not_satisfiable)})
async def target(path: str, backends: BackendsDep, _: CallerDep,
                 range_: Annotated[str | None, Header(alias="Range")] = None) -> StreamingResponse:
    """A target file by its consistent-snapshot name; honours one `Range`."""
    match = _TARGET.match(path)
    if match is None or len(path) > 400:
        raise NotFoundError(f"no target {path}")
    directory, sha256, name = match.groups()
    key = object_key(f"{directory}/{name}" if directory else name, sha256)
    files = TargetFiles(backends.store, backends.settings)
    size = await run_in_threadpool(files.size, key)
    span = parse_range(range_, size)  # 416 with `Content-Range: bytes */size` (server.api.errors)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "public, max-age=31536000, immutable"}
    code = status.HTTP_200_OK
    if span is not None:
        headers["Content-Range"] = f"bytes {span.first}-{span.last}/{size}"
        code = status.HTTP_206_PARTIAL_CONTENT
    span = span or ByteRange(0, size - 1, size)
    headers["Content-Length"] = str(span.length if size else 0)
    chunks = files.read(key, span) if size else iter(())
    return StreamingResponse(chunks, status_code=code, media_type="application/octet-stream", headers=headers)
