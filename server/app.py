"""The server's composition root: the API routers under `/api/v1` and the dashboard, error mapping, buckets
created on start."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool

from server.api import errors, metrics, openapi
from server.api.headers import SecurityHeaders
from server.api.limits import BodyLimit
from server.api.request_id import RequestId
from server.api.routes import (
    devices,
    drift,
    health,
    heartbeat,
    jobs,
    objects,
    registry,
    rollouts,
    schema,
    sync,
    telemetry,
    tokens,
    tuf,
)
from server.backends import Backends
from server.errors import RemoteError
from server.ui import router as ui
from server.ui.render import UI_PREFIX

logger = logging.getLogger(__name__)
API_PREFIX = "/api/v1"


def _api_router() -> APIRouter:
    api = APIRouter(prefix=API_PREFIX)
    for module in (tokens, devices, heartbeat, telemetry, sync, drift, jobs, objects, registry, rollouts, schema):
        api.include_router(module.router)
    return api


def create_app(backends: Backends) -> FastAPI:
    """An app serving `backends`; the caller owns (and closes) them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await run_in_threadpool(backends.store.ensure_buckets)
        except RemoteError as exc:  # keep serving: requests needing storage answer 503 until it is back
            logger.error("could not create buckets: %s", exc)
        yield

    docs = backends.settings.expose_docs
    app = FastAPI(title="TinySphere", version="1", lifespan=lifespan, openapi_url="/openapi.json" if docs else None,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None)
    app.state.backends = backends
    heartbeat.install(app, API_PREFIX)  # innermost: the middleware below apply to the heartbeats it answers
    app.add_middleware(BodyLimit, limit=backends.settings.max_request_bytes)
    app.add_middleware(SecurityHeaders)  # outermost: the 413 answers get the headers too
    metrics.install(app, backends, (API_PREFIX, UI_PREFIX))  # outside the body limit: its 413 answers are observed too
    app.add_middleware(RequestId)  # outermost of ours: every answer and every log line of a request carry its id
    errors.install(app)
    app.include_router(health.router)
    app.include_router(tuf.router)
    app.include_router(_api_router())
    ui.install(app, backends.settings)
    openapi.install(app)
    return app
