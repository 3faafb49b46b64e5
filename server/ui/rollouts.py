"""`/ui/rollouts`: plan a rollout, follow it live per wave and device, pause, resume or abort it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response, status

from server.api.deps import SessionDep
from server.errors import ConflictError, InputError, NotFoundError
from server.pagination import WHOLE, Paging
from server.registry import views as registry_views
from server.rollouts import service
from server.rollouts.states import LIVE, allows
from server.ui import rollout_form
from server.ui.render import UiRoute, page, redirect
from server.ui.session import ActingDep, UiSessionDep

router = APIRouter(route_class=UiRoute)
RolloutId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/rollouts")
def rollouts_page(request: Request, session: SessionDep, ui: UiSessionDep) -> Response:
    """Every rollout, newest first, with its waves at a glance."""
    rollouts = service.rollouts(session, Paging(200)).items
    return page(request, "rollouts.html", ui, title="Rollouts", rollouts=rollouts)


def _form_page(request: Request, session: SessionDep, ui: UiSessionDep, form: rollout_form.RolloutForm,
               code: int = status.HTTP_200_OK) -> Response:
    models = registry_views.models(session, WHOLE).items
    versions = {m.model: [b.version for b in registry_views.versions(session, m.model, WHOLE).items]
                for m in models}
    return page(request, "rollout_new.html", ui, code, title="New rollout", form=form, models=models,
                versions=versions, gates=rollout_form.GATES, labels=rollout_form.LABELS)


@router.get("/rollouts/new")
def new_rollout(request: Request, session: SessionDep, ui: UiSessionDep) -> Response:
    """The rollout form (viewers see it too, with a note that they cannot start one)."""
    return _form_page(request, session, ui, rollout_form.blank())


async def _submitted(request: Request) -> dict[str, str]:
    return {key: value for key, value in (await request.form()).items() if isinstance(value, str)}


@router.post("/rollouts/new")
def create_rollout(request: Request, session: SessionDep, ui: ActingDep,
                   submitted: Annotated[dict[str, str], Depends(_submitted)]) -> Response:
    """Validate every field, then plan as the API does; errors are shown next to their field."""
    form, body = rollout_form.parse(submitted)
    if body is not None:
        try:
            created = service.plan(session, body, ui.operator.name)
            session.commit()
        except NotFoundError as exc:
            session.rollback()
            form.error("bundle_version", f"{exc}: publish it first, or pick a published version")
        except (InputError, ConflictError) as exc:
            session.rollback()
            form.error({"tags": "tags", "devices": "device_ids"}.get(form.values["selector"], "selector"), str(exc))
        else:
            return redirect(request, f"/ui/rollouts/{created.id}")
    return _form_page(request, session, ui, form, status.HTTP_422_UNPROCESSABLE_CONTENT)


def _progress(session: SessionDep, ui: UiSessionDep, rollout_id: int) -> dict[str, Any]:
    rollout = service.rollout(session, rollout_id)
    return {"rollout": rollout, "devices": service.devices(session, rollout_id, WHOLE).items,
            "events": service.events(session, rollout_id, WHOLE).items, "live": rollout.state in LIVE,
            "actions": [action for action, (_, to) in service.ACTIONS.items() if allows(rollout.state, to)]}


@router.get("/rollouts/{rollout_id}")
def rollout_page(rollout_id: RolloutId, request: Request, session: SessionDep, ui: UiSessionDep) -> Response:
    """Progress per wave and device, the decisions with their reasons, and the operator's controls."""
    progress = _progress(session, ui, rollout_id)
    return page(request, "rollout.html", ui, title=f"Rollout {rollout_id}", error=None, **progress)


@router.get("/rollouts/{rollout_id}/progress")
def rollout_progress(rollout_id: RolloutId, request: Request, session: SessionDep, ui: UiSessionDep) -> Response:
    """The live part of the rollout page, fetched every few seconds while the rollout runs."""
    return page(request, "_rollout_progress.html", ui, error=None, **_progress(session, ui, rollout_id))


@router.post("/rollouts/{rollout_id}/{action}")
def control(rollout_id: RolloutId, action: service.Action, request: Request, session: SessionDep,
            ui: ActingDep) -> Response:
    """Pause, resume or abort as the API does; a refused transition is explained in place."""
    try:
        service.control(session, rollout_id, action, ui.operator.name)
    except ConflictError as exc:
        session.rollback()
        return page(request, "rollout.html", ui, status.HTTP_409_CONFLICT, title=f"Rollout {rollout_id}",
                    error=f"Could not {action}: {exc}", **_progress(session, ui, rollout_id))
    return redirect(request, f"/ui/rollouts/{rollout_id}")
