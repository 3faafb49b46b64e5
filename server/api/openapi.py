"""Error answers in the OpenAPI schema: every operation declares each problem it can answer with.

Most are read off the route itself: a bearer token means 401 and 429 (and 403 where a role or the
device is checked), path parameters 404, any parameter or body 422, a body 413, and every route may
answer 503. Routes declare the rest with `problems(...)`. Every 4xx and 5xx is a `Problem`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, get_args

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from server.api.deps import AdminDep, OperatorDep, ViewerDep, bearer, bearer_token, device_or_viewer, get_device_caller
from server.api.errors import ProblemType
from server.schemas.problems import MEDIA_TYPE, Problem

_REF = "#/components/schemas/{model}"
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "required": True,
                                "schema": {"type": "string"}}}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "the scheme to authenticate with", "required": True,
                               "schema": {"type": "string"}}},
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}
# Dependencies that refuse a known caller (wrong role, an operator on a device's route, another device).
_REFUSERS: tuple[Callable[..., Any], ...] = (
    get_device_caller, device_or_viewer, *(get_args(dep)[1].dependency for dep in (ViewerDep, OperatorDep, AdminDep)))


def problems(*kinds: ProblemType) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the problems it answers with that cannot be read off its signature."""
    declared: dict[int | str, dict[str, Any]] = {}
    for kind in kinds:
        entry = declared.setdefault(kind.status, {"description": kind.title})
        if kind.title not in entry["description"]:
            entry["description"] += f"; {kind.title.lower()}"
    return declared


def _calls(dependant: Dependant) -> Iterator[Any]:
    yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def api_routes(routes: list[BaseRoute]) -> Iterator[APIRoute]:
    """Every route of the schema, through included routers (FastAPI resolves those lazily)."""
    contexts = getattr(routing, "iter_route_contexts", None)
    candidates: Iterable[Any] = contexts(routes) if contexts is not None else routes
    for route in candidates:
        if isinstance(getattr(route, "original_route", route), APIRoute) and route.include_in_schema:
            yield route  # an APIRoute, or a context that reads like one


def _has_body(route: APIRoute) -> bool:
    return route.body_field is not None or "requestBody" in (route.openapi_extra or {})


def inferred(route: APIRoute) -> dict[int, ProblemType]:
    """The problems `route` can answer with, as its dependencies and parameters show."""
    calls = list(_calls(route.dependant))
    found = {503: ProblemType.unavailable}
    if any(call is bearer or call is bearer_token for call in calls):
        found |= {401: ProblemType.unauthorized, 429: ProblemType.too_many_attempts}
    if any(call is refuser for call in calls for refuser in _REFUSERS):
        found[403] = ProblemType.forbidden
    if route.dependant.path_params:
        found[404] = ProblemType.not_found
    dependant = route.dependant
    if _has_body(route) or any((dependant.path_params, dependant.query_params, dependant.header_params)):
        found[422] = ProblemType.invalid_request
    if _has_body(route):
        found[413] = ProblemType.too_large
    return found


def _declare(operation: dict[str, Any], route: APIRoute) -> None:
    responses: dict[str, dict[str, Any]] = operation["responses"]
    for code, kind in inferred(route).items():
        entry = responses.setdefault(str(code), {"description": kind.title})
        if code == 422 and entry["description"] == "Validation Error":  # FastAPI's own, with its own body
            entry["description"] = "Invalid request: `errors` lists every invalid field"
    for status, entry in responses.items():
        if status.isdigit() and int(status) >= 400:
            entry["content"] = {MEDIA_TYPE: {"schema": {"$ref": _REF.format(model="Problem")}}}
            if int(status) in _HEADERS:
                entry["headers"] = _HEADERS[int(status)]
    operation["responses"] = dict(sorted(responses.items()))


def declare_problems(schema: dict[str, Any], routes: list[BaseRoute]) -> None:
    """Add every route's problems to `schema` (FastAPI's), and the `Problem` body they share."""
    for route in api_routes(routes):
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is not None:
                _declare(operation, route)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    body = Problem.model_json_schema(ref_template=_REF)
    components.update(body.pop("$defs", {}))
    components["Problem"] = body


def install(app: FastAPI) -> None:
    """Make `app.openapi()` declare the problems (built once, on first use, like FastAPI's own)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            declare_problems(build(), app.routes)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
