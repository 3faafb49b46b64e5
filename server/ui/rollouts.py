"""`/ui/rollouts`: plan a rollout, follow it live per wave and device, pause, resume or abort it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response, status

from server.api.deps import SessionDep
from server.api.pagination import WHOLE, Paging
from server.api.routes import registry as registry_api
from server.api.routes import rollouts as rollouts_api
from server.errors import ConflictError, InputError, NotFoundError
from server.ui import rollout_form
from server.ui.render import UiRoute, page, redirect
from server.ui.session import ActingDep, UiSessionDep

router = APIRouter(route_class=UiRoute)
RolloutId = Annotated[int, Path(ge=1, le=2**31 - 1)]
LIVE_STATES = ("running", "paused")


@router.get("/rollouts")
def rollouts_page(request: Request, session: SessionDep, ui: UiSessionDep) -> Response:
    """Every rollout, newest first, with its waves at a glance."""
    rollouts = rollouts_api.list_rollouts(session, ui.operator, state=None, page=Paging(200)).items
    return page(request, "rollouts.html", ui, title="Rollouts", rollouts=rollouts)


def _form_page(request: Request, session: SessionDep, ui: UiSessionDep, form: rollout_form.RolloutForm,
               code: int = status.HTTP_200_OK) -> Response:
    models = registry_api.list_models(session, ui.operator, WHOLE).items
    versions = {m.model: [b.version for b in registry_api.list_versions(m.model, session, ui.operator, WHOLE).items]
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
    """Validate every field, then create through the API's own handler; errors are shown next to their field."""
    form, body = rollout_form.parse(submitted)
    if body is not None:
        try:
            created = rollouts_api.create(body, session, ui.operator)
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
    rollout = rollouts_api.get_rollout(rollout_id, session, ui.operator)
    return {"rollout": rollout, "devices": rollouts_api.rollout_devices(rollout_id, session, ui.operator, WHOLE).items,
            "events": rollouts_api.rollout_events(rollout_id, session, ui.operator, WHOLE).items,
            "live": rollout.state in LIVE_STATES}


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
def control(rollout_id: RolloutId, action: Literal["pause", "resume", "abort"], request: Request,
            session: SessionDep, ui: ActingDep) -> Response:
    """Pause, resume or abort through the API's own handlers; a refused transition is explained in place."""
    handler = {"pause": rollouts_api.pause, "resume": rollouts_api.resume, "abort": rollouts_api.abort}[action]
    try:
        handler(rollout_id, session, ui.operator)
    except ConflictError as exc:
        session.rollback()
        return page(request, "rollout.html", ui, status.HTTP_409_CONFLICT, title=f"Rollout {rollout_id}",
                    error=f"Could not {action}: {exc}", **_progress(session, ui, rollout_id))
    return redirect(request, f"/ui/rollouts/{rollout_id}")
