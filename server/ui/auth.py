"""`/ui/login` and `/ui/logout`: trade an operator token for a dashboard session, and end it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response, status

from server.api.deps import AddressDep, ClockDep, LimitsDep, SessionDep
from server.errors import TooManyAttemptsError
from server.ratelimit import Kind
from server.ui import session as ui_session
from server.ui.render import UiRoute, page, redirect, safe_next
from server.ui.session import COOKIE, COOKIE_PATH, LIFETIME_S, LOGIN_COOKIE, UiSessionDep

router = APIRouter(route_class=UiRoute)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("X-Forwarded-Proto") == "https"


def _login_page(request: Request, next_path: str, error: str | None = None,
                code: int = status.HTTP_200_OK) -> Response:
    csrf = ui_session.login_csrf()
    response = page(request, "login.html", None, code, title="Sign in", next_path=safe_next(next_path),
                    csrf=csrf, error=error)
    response.set_cookie(LOGIN_COOKIE, csrf, max_age=3600, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=_secure(request))
    return response


def _duration(seconds: int) -> str:
    count, unit = (seconds, "second") if seconds <= 90 else (-(-seconds // 60), "minute")
    return f"{count} {unit}{'' if count == 1 else 's'}"


def _throttled_page(request: Request, next_path: str, exc: TooManyAttemptsError) -> Response:
    message = (f"Too many failed sign-ins from this address or with this token. Sign-in is paused for both, "
               f"even with the right token; try again in {_duration(exc.retry_after_s)}.")
    response = _login_page(request, next_path, message, status.HTTP_429_TOO_MANY_REQUESTS)
    response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


@router.get("/login")
def login_form(request: Request, next_path: Annotated[str | None, Query(alias="next", max_length=512)] = None,
               ) -> Response:
    """The sign-in form: paste an operator (or viewer) API token."""
    return _login_page(request, next_path or "/ui/")


@router.post("/login")
def login(request: Request, session: SessionDep, limits: LimitsDep, address: AddressDep, clock: ClockDep,
          token: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "",
          next_path: Annotated[str, Form(alias="next")] = "") -> Response:
    """Check the token; on success set the session cookie and go where the operator was headed.

    Failed attempts are counted per address and per token prefix; past the limit the form answers 429 (the
    right token included) until the window ends."""
    next_path = safe_next(next_path)
    if not ui_session.same_secret(csrf, request.cookies.get(LOGIN_COOKIE, "")):
        return _login_page(request, next_path, "The sign-in form expired. Please try again.",
                           status.HTTP_400_BAD_REQUEST)
    token = token.strip()
    keys = limits.keys(Kind.login, address, token)
    try:
        limits.check(session, keys)
    except TooManyAttemptsError as exc:
        session.rollback()
        return _throttled_page(request, next_path, exc)
    signed_in = ui_session.sign_in(session, token, clock())
    if signed_in is None:
        session.rollback()
        if token:
            limits.failed(session, keys)
        session.commit()
        return _login_page(request, next_path, "That token is unknown, revoked, or not an operator API token.",
                           status.HTTP_401_UNAUTHORIZED)
    session.commit()
    response = redirect(request, next_path)
    response.set_cookie(COOKIE, signed_in[1], max_age=LIFETIME_S, path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=_secure(request))
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout")
def logout(request: Request, ui: UiSessionDep, session: SessionDep, clock: ClockDep,
           csrf: Annotated[str, Form()] = "") -> Response:
    """End the session on the server, so a copy of its cookie is refused too (the form carries the CSRF token,
    so no other site can sign an operator out)."""
    if not ui_session.same_secret(csrf, ui.csrf):
        raise ui_session.Refused("This form did not come from your current dashboard session. Reload and retry.")
    ui_session.end(session, ui.session_id, clock())
    session.commit()
    response = redirect(request, "/ui/login")
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response
