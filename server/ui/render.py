"""Turning page data into HTML: the Jinja environment (autoescaped), security headers, and the route class
that makes a missing session a redirect, a refusal a 403 page and a missing resource a 404 page.

Each page gets a fresh CSP nonce; only `<script>` tags carrying it run, so markup that ever slipped
past autoescaping could not run script of its own.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from server.errors import NotFoundError
from server.ui import charts
from server.ui.session import COOKIE, COOKIE_PATH, LoginRequired, Refused, UiSession

logger = logging.getLogger(__name__)
TEMPLATES = Path(__file__).parent / "templates"
UI_PREFIX = "/ui"

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True)


def _when(value: datetime | None) -> str:
    if value is None:
        return "never"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = int((datetime.now(UTC) - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds // size} {unit} ago"
    return f"{max(seconds, 0)} s ago"


def _number(value: object, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e6 else f"{value:.3e}"
    return str(value)


_env.filters.update(when=_when, ago=_ago, number=_number)
_env.globals.update(state_bar=charts.state_bar, line_chart=charts.line_chart,
                    bar_chart=charts.bar_chart)


def csp(nonce: str | None) -> str:
    """The Content-Security-Policy of dashboard responses: scripts only with `nonce` (none without one),
    styles, images and forms only from this server, never framed.

    'strict-dynamic' makes browsers that know it ignore 'self' and trust the nonce alone; 'self' is
    the fallback for those that do not.
    """
    scripts = f"'self' 'nonce-{nonce}' 'strict-dynamic'" if nonce else "'none'"
    return (f"default-src 'none'; script-src {scripts}; style-src 'self'; connect-src 'self'; "
            "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _headers(request: Request) -> dict[str, str]:
    return {"Content-Security-Policy": csp(getattr(request.state, "csp_nonce", None)),
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
            "Cache-Control": "no-store"}


def page(request: Request, template: str, ui: UiSession | None, code: int = status.HTTP_200_OK,
         **context: Any) -> HTMLResponse:
    """Render a template for the signed-in operator (or for nobody, on the login page)."""
    request.state.csp_nonce = nonce = secrets.token_urlsafe(18)
    html = _env.get_template(template).render(request=request, ui=ui, path=request.url.path, csp_nonce=nonce,
                                              **context)
    return HTMLResponse(html, status_code=code, headers=_headers(request))


def redirect(request: Request, target: str) -> RedirectResponse:
    """A 303 to another dashboard page (after a form, or to the login page)."""
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER, headers=_headers(request))


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a dashboard path on this server, never another site."""
    if not target or not target.startswith(UI_PREFIX + "/") or target.startswith("//") or "\\" in target:
        return UI_PREFIX + "/"
    return target


def _login_redirect(request: Request, exc: LoginRequired) -> Response:
    if request.headers.get("X-Requested-With") == "fetch":  # a live fragment: let the script navigate
        return Response(status_code=status.HTTP_401_UNAUTHORIZED, headers=_headers(request))
    response = redirect(request, f"{UI_PREFIX}/login?next={quote(safe_next(exc.next_path), safe='/')}")
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


class UiRoute(APIRoute):
    """Dashboard routes answer with pages, never JSON: 303 to login, 403 and 404 pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired as exc:
                return _login_redirect(request, exc)
            except Refused as exc:
                return page(request, "error.html", None, status.HTTP_403_FORBIDDEN, title="Not allowed",
                            message=exc.reason)
            except (NotFoundError, RequestValidationError) as exc:
                logger.info("dashboard 404 for %s: %s", request.url.path, exc)
                return page(request, "error.html", None, status.HTTP_404_NOT_FOUND, title="Not found",
                            message="There is nothing at this address: the device, event, model or rollout "
                                    "does not exist.")
            for name, value in _headers(request).items():
                response.headers.setdefault(name, value)
            return response

        return answer
