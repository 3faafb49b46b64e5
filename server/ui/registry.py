"""`/ui/registry`: models, their versions with metrics and MLflow lineage, and one bundle's signed detail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from server.api.deps import SessionDep
from server.api.pagination import WHOLE
from server.api.routes import registry as registry_api
from server.ui.render import UiRoute, page
from server.ui.session import UiSessionDep

router = APIRouter(route_class=UiRoute)
Name = Annotated[str, Path(max_length=128)]


@router.get("/registry")
def models_page(request: Request, session: SessionDep, ui: UiSessionDep) -> Response:
    """Every model with published bundles, and each one's versions."""
    models = registry_api.list_models(session, ui.operator, WHOLE).items
    versions = {m.model: registry_api.list_versions(m.model, session, ui.operator, WHOLE).items for m in models}
    return page(request, "registry.html", ui, title="Registry", models=models, versions=versions)


@router.get("/registry/{model}/{version}")
def bundle_page(model: Name, version: Name, request: Request, session: SessionDep, ui: UiSessionDep) -> Response:
    """One bundle: target, hash, signatures over the current targets metadata, custom fields, bundle.json."""
    bundle = registry_api.get_version(model, version, session, ui.operator)
    return page(request, "bundle.html", ui, title=f"{bundle.model} {bundle.version}", bundle=bundle)
