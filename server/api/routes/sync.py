"""`PUT /sync/packages/{id}`: the server half of the sync protocol (device auth).

The body is streamed to a spooled temporary file while its size and SHA-256 are checked, then
handed to the object store; it is never held whole in memory.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from server import packages
from server.api.deps import BackendsDep, CallerDep, DeviceDep, SessionDep, ViewerDep
from server.api.routes.devices import Limit, Offset
from server.api.schemas import Page
from server.api.schemas.sync import PackageOut
from server.api.uploads import spool
from server.db.models import Package, PackageStatus
from server.errors import DigestMismatchError, NotFoundError
from server.identity import DeviceCaller
from server.package_format import PACKAGE_ID_PATTERN

router = APIRouter(prefix="/sync", tags=["sync"])
PackageId = Annotated[str, Path(pattern=PACKAGE_ID_PATTERN)]
Sha256Header = Annotated[str, Header(alias="X-Content-SHA256", pattern=r"^[0-9a-fA-F]{64}$")]
@router.put(
    "/packages/{package_id}",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "already stored (same bytes)"}, 409: {"description": "id reused"},
               413: {"description": "too large"}, 400: {"description": "SHA-256 mismatch"}},
    openapi_extra={"requestBody": {"required": True,
                                   "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                              "format": "binary"}}}}},
)
async def upload_package(
    package_id: PackageId, request: Request, response: Response, device: DeviceDep, backends: BackendsDep,
    sha256: Sha256Header,
) -> PackageOut:
    """Store a package (tar.gz, see the package format) and queue its import."""
    body, size, actual = await spool(request, backends.settings.max_package_bytes, "package")
    with body:
        if actual != sha256.lower():
            raise DigestMismatchError(f"body SHA-256 is {actual}, header says {sha256}")
        package, created = await run_in_threadpool(
            packages.receive, backends, device.device_id, package_id, body, size, actual
        )
    if not created:
        response.status_code = status.HTTP_200_OK
    return PackageOut.model_validate(package)


@router.get("/packages")
def list_packages(
    session: SessionDep,
    _: ViewerDep,
    device_id: str | None = None,
    status_: Annotated[PackageStatus | None, Query(alias="status")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[PackageOut]:
    """Packages, newest first (operators): e.g. the rejected or parked ones and why."""
    query = select(Package)
    if device_id is not None:
        query = query.where(Package.device_id == device_id)
    if status_ is not None:
        query = query.where(Package.status == status_.value)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Package.received_at.desc(), Package.id).limit(limit).offset(offset))
    return Page(items=[PackageOut.model_validate(r) for r in rows], count=count, limit=limit, offset=offset)


@router.get("/packages/{package_id}")
def get_package(package_id: PackageId, session: SessionDep, caller: CallerDep) -> PackageOut:
    """Import status of a package (its device or any operator)."""
    package = session.get(Package, package_id)
    if package is None or (isinstance(caller, DeviceCaller) and package.device_id != caller.device_id):
        raise NotFoundError(f"no package {package_id}")
    return PackageOut.model_validate(package)
