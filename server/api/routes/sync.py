"""`PUT /sync/packages/{id}`: the server half of the sync protocol (device auth).

A package id names a package of the calling device: ids are unique per device, never across the
fleet, so a device can neither collide with nor read another device's packages. Operators name the
device with `?device_id=`. The body is streamed to a spooled temporary file while its size and
SHA-256 are checked, then handed to the object store; it is never held whole in memory.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from server import packages
from server.api.deps import BackendsDep, CallerDep, DeviceDep, SessionDep, ViewerDep
from server.api.errors import ProblemType
from server.api.openapi import problems
from server.api.uploads import spool
from server.db.models import Package, PackageStatus
from server.errors import DigestMismatchError, InputError, NotFoundError
from server.identity import DeviceCaller
from server.package_format import PACKAGE_ID_PATTERN
from server.pagination import PageDep
from server.schemas import Page
from server.schemas.sync import PackageOut

router = APIRouter(prefix="/sync", tags=["sync"])
PackageId = Annotated[str, Path(pattern=PACKAGE_ID_PATTERN)]
Sha256Header = Annotated[str, Header(alias="X-Content-SHA256", pattern=r"^[0-9a-fA-F]{64}$")]


@router.put(
    "/packages/{package_id}",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "already stored (this device, same bytes)"},
               409: {"description": "this device already stored other bytes under this id"},
               **problems(ProblemType.digest_mismatch, ProblemType.incomplete_body)},
    openapi_extra={"requestBody": {"required": True,
                                   "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                              "format": "binary"}}}}},
)
async def upload_package(
    package_id: PackageId, request: Request, response: Response, device: DeviceDep, backends: BackendsDep,
    sha256: Sha256Header,
) -> PackageOut:
    """Store a package of the calling device (tar.gz, see the package format) and queue its import.

    The answer names the device and the SHA-256 of what is stored under the id; the device deletes
    its records only when both are its own.
    """
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
    page: PageDep,
    device_id: str | None = None,
    status_: Annotated[PackageStatus | None, Query(alias="status")] = None,
) -> Page[PackageOut]:
    """Packages, newest first (operators): e.g. the rejected or parked ones and why."""
    query = select(Package)
    if device_id is not None:
        query = query.where(Package.device_id == device_id)
    if status_ is not None:
        query = query.where(Package.status == status_.value)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    order = (Package.received_at.desc(), Package.device_id, Package.id)
    rows = session.scalars(query.order_by(*order).limit(page.limit).offset(page.offset))
    return page.page([PackageOut.model_validate(r) for r in rows], count)


@router.get("/packages/{package_id}")
def get_package(package_id: PackageId, session: SessionDep, caller: CallerDep,
                device_id: Annotated[str | None, Query(max_length=40)] = None) -> PackageOut:
    """Import status of a package: a device reads its own; an operator names the device (`?device_id=`)."""
    if isinstance(caller, DeviceCaller):
        if device_id not in (None, caller.device_id):
            raise NotFoundError(f"no package {package_id}")
        device_id = caller.device_id
    elif device_id is None:
        raise InputError("package ids are unique per device: name it with ?device_id=")
    package = packages.find(session, device_id, package_id)
    if package is None:
        raise NotFoundError(f"no package {package_id} of device {device_id}")
    return PackageOut.model_validate(package)
