"""The API's OpenAPI schema for any viewer token; the unauthenticated `/openapi.json` and `/docs` are off by default."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from server.api.deps import ViewerDep

router = APIRouter(tags=["schema"])


@router.get("/openapi.json", include_in_schema=False)
def openapi_schema(request: Request, _viewer: ViewerDep) -> dict[str, Any]:
    schema: dict[str, Any] = request.app.openapi()
    return schema
