"""`/ui/login` and `/ui/logout`: trade an operator token for a dashboard session, and end it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response, status

from server.api.deps import SessionDep
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


@router.get("/login")
def login_form(request: Request, next_path: Annotated[str | None, Query(alias="next", max_length=512)] = None,
               ) -> Response:
    """The sign-in form: paste an operator (or viewer) API token."""
    return _login_page(request, next_path or "/ui/")


@router.post("/login")
def login(request: Request, session: SessionDep, token: Annotated[str, Form()] = "",
          csrf: Annotated[str, Form()] = "",
          next_path: Annotated[str, Form(alias="next")] = "") -> Response:
    """Check the token; on success set the session cookie and go where the operator was headed."""
    next_path = safe_next(next_path)
    if not ui_session.same_secret(csrf, request.cookies.get(LOGIN_COOKIE, "")):
        return _login_page(request, next_path, "The sign-in form expired. Please try again.",
                           status.HTTP_400_BAD_REQUEST)
    signed_in = ui_session.sign_in(session, token)
    session.rollback()
    if signed_in is None:
        return _login_page(request, next_path, "That token is unknown, revoked, or not an operator API token.",
                           status.HTTP_401_UNAUTHORIZED)
    response = redirect(request, next_path)
    response.set_cookie(COOKIE, signed_in[1], max_age=LIFETIME_S, path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=_secure(request))
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout")
def logout(request: Request, ui: UiSessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    """End the session (the form carries the CSRF token, so no other site can sign an operator out)."""
    if not ui_session.same_secret(csrf, ui.csrf):
        raise ui_session.Refused("This form did not come from your current dashboard session. Reload and retry.")
    response = redirect(request, "/ui/login")
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response
