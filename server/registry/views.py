"""The model catalogue as the JSON API and the dashboard both show it: models, versions, one bundle."""

from __future__ import annotations

from sqlalchemy.orm import Session

from server.db.models import Bundle
from server.pagination import Paging
from server.registry import catalog
from server.schemas import Page
from server.schemas.registry import BundleDetail, BundleOut, ModelOut


def bundle_out(bundle: Bundle, running: int | None = None) -> BundleOut:
    """A bundle with its metrics from bundle.json and, if counted, how many devices run it."""
    metrics = bundle.manifest.get("metrics") if isinstance(bundle.manifest.get("metrics"), dict) else {}
    return BundleOut.model_validate(bundle).model_copy(update={"metrics": metrics, "devices_running": running})


def models(session: Session, page: Paging) -> Page[ModelOut]:
    """Models with published bundles."""
    return page.cut([ModelOut(**row) for row in catalog.models(session)])


def versions(session: Session, model: str, page: Paging) -> Page[BundleOut]:
    """A model's versions, newest first, with metrics, lineage and how many devices run each."""
    return page.cut([bundle_out(bundle, running) for bundle, running in catalog.versions(session, model)])


def version(session: Session, model: str, version: str) -> BundleDetail:
    """One bundle: custom fields, bundle.json and the signatures over the current targets."""
    bundle = catalog.bundle(session, model, version)
    return BundleDetail(**bundle_out(bundle).model_dump(), custom=bundle.custom, manifest=bundle.manifest,
                        signatures=catalog.signatures(session))
