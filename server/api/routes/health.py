"""`/healthz`: the only unauthenticated endpoint; 200 when the database answers."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import text

from server.api.deps import BackendsDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(backends: BackendsDep, response: Response) -> dict[str, str]:
    """Liveness and readiness in one: the API is useful only while PostgreSQL answers."""
    try:
        with backends.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        response.headers["Retry-After"] = str(backends.settings.retry_after_s)
        return {"status": "unavailable", "database": "unreachable"}
    return {"status": "ok"}
