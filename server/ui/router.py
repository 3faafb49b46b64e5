"""The dashboard under `/ui`: its pages, its static files, and the headers every page carries."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request, Response, status
from fastapi.staticfiles import StaticFiles

from server.config import Settings
from server.ui import auth, drift, fleet, registry, rollouts
from server.ui.render import UI_PREFIX, UiRoute, page
from server.ui.session import UiSessionDep

STATIC = Path(__file__).parent / "static"
_fallback = APIRouter(route_class=UiRoute)


@_fallback.get("/{rest:path}")
def unknown_page(rest: str, request: Request, ui: UiSessionDep) -> Response:
    """Any other address under /ui: a 404 page (after sign-in, so it tells strangers nothing)."""
    return page(request, "error.html", ui, status.HTTP_404_NOT_FOUND, title="Not found",
                message="There is no dashboard page at this address.")


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the dashboard from `app` (kept out of the OpenAPI schema: it is not part of the API)."""
    ui = APIRouter(prefix=UI_PREFIX, include_in_schema=False)
    for module in (auth, fleet, drift, registry, rollouts):
        ui.include_router(module.router)
    ui.include_router(_fallback)
    app.mount(f"{UI_PREFIX}/static", StaticFiles(directory=STATIC), name="ui-static")
    app.include_router(ui)
