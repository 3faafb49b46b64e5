"""`/healthz`: the only unauthenticated endpoint; 200 when the database answers, else a 503 problem."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from server.api.deps import BackendsDep
from server.api.errors import ProblemType, answer

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=dict[str, str])
def healthz(request: Request, backends: BackendsDep) -> dict[str, str] | Response:
    """Liveness and readiness in one: the API is useful only while PostgreSQL answers."""
    try:
        with backends.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return answer(request, ProblemType.unavailable, "database unreachable",
                      {"Retry-After": str(backends.settings.retry_after_s)}, service="database")
    return {"status": "ok"}
