"""Operator API tokens (admin) and one-time enrollment tokens (operator)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, status
from sqlalchemy import func, select, update

from server.api.deps import AdminDep, OperatorDep, SessionDep
from server.api.errors import ProblemType
from server.api.idempotency import IdempotencyDep
from server.api.openapi import problems
from server.db.models import ApiToken
from server.errors import NotFoundError
from server.identity import create_api_token, create_enrollment_token, token_hash
from server.pagination import PageDep
from server.schemas import Page
from server.schemas.tokens import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenOut,
    EnrollmentTokenCreate,
    EnrollmentTokenCreated,
)

router = APIRouter(tags=["tokens"])


@router.post("/tokens", status_code=status.HTTP_201_CREATED, responses=problems(ProblemType.conflict))
def create_token(body: ApiTokenCreate, session: SessionDep, admin: AdminDep,
                 once: IdempotencyDep) -> ApiTokenCreated:
    """Create an operator token; the token is in this response only (and in its replays under an Idempotency-Key)."""
    claim = once.claim(admin, "POST /tokens", body)
    if (earlier := claim.replay(ApiTokenCreated)) is not None:
        return earlier
    token = create_api_token(session, body.name, body.role)
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == token_hash(token))).one()
    created = claim.keep(ApiTokenCreated(token=token, **ApiTokenOut.model_validate(row).model_dump()))
    session.commit()
    return created


@router.get("/tokens")
def list_tokens(session: SessionDep, _: AdminDep, page: PageDep) -> Page[ApiTokenOut]:
    """Operator tokens, oldest first (never the token itself)."""
    count = session.scalar(select(func.count()).select_from(ApiToken)) or 0
    rows = session.scalars(select(ApiToken).order_by(ApiToken.id).limit(page.limit).offset(page.offset))
    return page.page([ApiTokenOut.model_validate(row) for row in rows], count)


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep, _: AdminDep) -> None:
    """Revoke an operator token; it stops working at once."""
    done = session.execute(
        update(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC)).returning(ApiToken.id)
    ).first()
    if done is None:
        raise NotFoundError(f"no active token {token_id}")
    session.commit()


@router.post("/enrollment-tokens", status_code=status.HTTP_201_CREATED, responses=problems(ProblemType.conflict))
def create_enrollment(body: EnrollmentTokenCreate, session: SessionDep, operator: OperatorDep,
                      once: IdempotencyDep) -> EnrollmentTokenCreated:
    """Create a one-time token a device exchanges for its identity."""
    claim = once.claim(operator, "POST /enrollment-tokens", body)
    if (earlier := claim.replay(EnrollmentTokenCreated)) is not None:
        return earlier
    token = create_enrollment_token(session, timedelta(seconds=body.ttl_s), body.tags)
    created = claim.keep(EnrollmentTokenCreated(token=token,
                                                expires_at=datetime.now(UTC) + timedelta(seconds=body.ttl_s)))
    session.commit()
    return created
