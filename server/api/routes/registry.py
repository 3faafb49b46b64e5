"""`/registry`: signed metadata in (root, targets), bundle uploads, and the model catalogue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from server.api.deps import AdminDep, BackendsDep, OperatorDep, SessionDep, ViewerDep
from server.api.errors import ProblemType
from server.api.openapi import problems
from server.api.uploads import spool
from server.errors import NotFoundError
from server.pagination import PageDep
from server.registry import catalog, publishing, repository, views
from server.registry.target_files import ByteRange, TargetFiles, object_key
from server.schemas import Page
from server.schemas.registry import (
    BundleDetail,
    BundleOut,
    ModelOut,
    PublishRequest,
    RootOut,
    RootUpdate,
    UploadOut,
)

router = APIRouter(prefix="/registry", tags=["registry"])
Sha256Header = Annotated[str, Header(alias="X-Content-SHA256", pattern=r"^[0-9a-fA-F]{64}$")]
Role = Annotated[str, Path(pattern=r"^(root|targets|snapshot|timestamp)$")]


@router.get("/metadata/{role}", response_class=Response)
def metadata(role: Role, session: SessionDep, _: ViewerDep) -> Response:
    """The newest signed metadata of a role (what an offline signer starts from)."""
    return Response(repository.body(session, role), media_type="application/json")


@router.put("/root", responses=problems(ProblemType.conflict))
def put_root(body: RootUpdate, backends: BackendsDep, session: SessionDep, _: AdminDep) -> RootOut:
    """Install the next root version (version 1 initialises the repository)."""
    targets = body.targets.encode() if body.targets is not None else None
    version = repository.install_root(session, backends.settings, body.metadata.encode(), targets)
    session.commit()
    return RootOut(version=version)


@router.put("/uploads/{target_path:path}", status_code=status.HTTP_201_CREATED,
            responses=problems(ProblemType.digest_mismatch, ProblemType.incomplete_body),
            openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}}})
async def upload(target_path: str, request: Request, backends: BackendsDep, sha256: Sha256Header,
                 _: OperatorDep) -> UploadOut:
    """Store a bundle tar before the targets metadata naming it is published."""
    object_key(target_path, sha256.lower())  # refuse a bad path before reading the body
    body, size, actual = await spool(request, backends.settings.max_bundle_bytes, "bundle")
    with body:
        files = TargetFiles(backends.store, backends.settings)
        key = await run_in_threadpool(files.put, target_path, body, size, actual, sha256)
    return UploadOut(target_path=target_path, sha256=actual, length=size, object_key=key)


@router.post("/publish", status_code=status.HTTP_201_CREATED,
             responses=problems(ProblemType.not_found, ProblemType.conflict))
def publish(body: PublishRequest, backends: BackendsDep, operator: OperatorDep) -> list[BundleOut]:
    """Accept the next targets metadata, signed offline; the server signs snapshot and timestamp."""
    lineage = body.lineage.model_dump(exclude_none=True) if body.lineage else None
    bundles = publishing.publish(backends, body.metadata.encode(), operator.name, lineage)
    return [views.bundle_out(bundle) for bundle in bundles]


@router.get("/models")
def list_models(session: SessionDep, _: ViewerDep, page: PageDep) -> Page[ModelOut]:
    """Models with published bundles."""
    return views.models(session, page)


@router.get("/models/{model}/versions")
def list_versions(model: str, session: SessionDep, _: ViewerDep, page: PageDep) -> Page[BundleOut]:
    """A model's versions, newest first, with metrics, lineage and how many devices run each."""
    return views.versions(session, model, page)


@router.get("/models/{model}/versions/{version}")
def get_version(model: str, version: str, session: SessionDep, _: ViewerDep) -> BundleDetail:
    """One bundle: custom fields, bundle.json and the signatures over the current targets."""
    return views.version(session, model, version)


@router.get("/models/{model}/versions/{version}/download", response_class=StreamingResponse)
def download(model: str, version: str, session: SessionDep, backends: BackendsDep,
             _: ViewerDep) -> StreamingResponse:
    """The bundle tar."""
    bundle = catalog.bundle(session, model, version)
    session.rollback()
    files = TargetFiles(backends.store, backends.settings)
    if files.size(bundle.object_key) != bundle.length:
        raise NotFoundError(f"bundle {model} {version} is missing from storage")
    headers = {"Content-Disposition": f'attachment; filename="{model}-{version}.bundle.tar"',
               "Content-Length": str(bundle.length)}
    span = ByteRange(0, bundle.length - 1, bundle.length)
    return StreamingResponse(files.read(bundle.object_key, span), media_type="application/x-tar", headers=headers)
