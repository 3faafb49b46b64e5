"""The registry as operators browse it: models, their published versions, metrics and lineage."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tuf.api.metadata import Targets

from server.db.models import Bundle, Device, DeviceStatus
from server.errors import NotFoundError
from server.registry import repository


def models(session: Session) -> list[dict[str, Any]]:
    """Every model with its number of versions and newest publication."""
    rows = session.execute(
        select(Bundle.model, func.count(), func.max(Bundle.published_at)).group_by(Bundle.model).order_by(Bundle.model)
    )
    return [{"model": model, "versions": count, "last_published_at": last} for model, count, last in rows]


def versions(session: Session, model: str) -> list[tuple[Bundle, int]]:
    """A model's bundles, newest first, with how many active devices report running each."""
    running = (select(func.count()).select_from(Device)
               .where(Device.status == DeviceStatus.active.value, Device.model_version == Bundle.version)
               .scalar_subquery())
    rows = session.execute(
        select(Bundle, running).where(Bundle.model == model).order_by(Bundle.published_at.desc(), Bundle.id.desc())
    ).all()
    if not rows:
        raise NotFoundError(f"no model {model}")
    return [(bundle, count) for bundle, count in rows]


def bundle(session: Session, model: str, version: str) -> Bundle:
    """One published bundle."""
    found = session.scalars(select(Bundle).where(Bundle.model == model, Bundle.version == version)).first()
    if found is None:
        raise NotFoundError(f"no bundle {model} {version}")
    return found


def signatures(session: Session) -> dict[str, Any]:
    """Who signed the current targets metadata, and its version and expiry."""
    row = repository.latest(session, Targets.type)
    if row is None:
        return {}
    targets = repository.parse(row.body, Targets)
    return {"targets_version": targets.signed.version, "expires": targets.signed.expires,
            "keyids": sorted(targets.signatures)}
