"""`/ui/registry`: models, their versions with metrics and MLflow lineage, and one bundle's signed detail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from server.api.deps import SessionDep
from server.pagination import WHOLE
from server.registry import views
from server.ui.render import UiRoute, page
from server.ui.session import UiSessionDep

router = APIRouter(route_class=UiRoute)
Name = Annotated[str, Path(max_length=128)]


@router.get("/registry")
def models_page(request: Request, session: SessionDep, ui: UiSessionDep) -> Response:
    """Every model with published bundles, and each one's versions."""
    models = views.models(session, WHOLE).items
    versions = {m.model: views.versions(session, m.model, WHOLE).items for m in models}
    return page(request, "registry.html", ui, title="Registry", models=models, versions=versions)


@router.get("/registry/{model}/{version}")
def bundle_page(model: Name, version: Name, request: Request, session: SessionDep, ui: UiSessionDep) -> Response:
    """One bundle: target, hash, signatures over the current targets metadata, custom fields, bundle.json."""
    bundle = views.version(session, model, version)
    return page(request, "bundle.html", ui, title=f"{bundle.model} {bundle.version}", bundle=bundle)
