"""Prometheus metrics of the server: `GET /metrics` (viewer or better), a registry per app.

Request durations are observed per process by `RequestMetrics`, labelled by the matched route's template (never the
raw URL), the method and the status class. The fleet's figures are read from PostgreSQL at scrape time by
`DatabaseCollector`, one cheap query each, so they are the same whichever process answers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.deps import ViewerDep
from server.backends import Backends
from server.db.models import Device, DeviceStatus, Job, JobState, Rollout, TufMetadata
from server.rollouts.states import RolloutState

router = APIRouter(tags=["metrics"])
TUF_ROLES = ("root", "targets", "snapshot", "timestamp")


class RequestMetrics:
    """ASGI middleware observing each HTTP request's duration in `histogram` by route template, method, status.

    A route included through routers with prefixes knows only its own template (`/devices/{device_id}` for both
    `/api/v1/devices/{device_id}` and the dashboard's `/ui/devices/{device_id}`), so the label is the first of
    `prefixes` (literal include prefixes, longest first) under which the route matches the request's path, plus
    that template; found once per route.
    """

    def __init__(self, app: ASGIApp, histogram: Histogram, prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.histogram = histogram
        self.prefixes = (*sorted(prefixes, key=len, reverse=True), "")
        self._labels: dict[int, str] = {}

    def _label(self, scope: Scope) -> str:
        route = scope.get("route")
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        if route is None or template is None:
            return "unmatched"
        label = self._labels.get(id(route))  # a route is included once: under one prefix
        if label is None:
            path: str = scope["path"]
            regex = getattr(route, "path_regex", None)
            prefix = next((prefix for prefix in self.prefixes if path.startswith(prefix)
                           and (regex is None or regex.match(path[len(prefix):]))), "")
            label = self._labels.setdefault(id(route), prefix + template)
        return label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what an exception escaping the app becomes

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.histogram.labels(self._label(scope), scope["method"], f"{status // 100}xx").observe(
                time.perf_counter() - start)


class DatabaseCollector(Collector):
    """Queue, fleet, rollout and TUF figures computed from the database at each scrape."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        online_since = now - timedelta(seconds=self.backends.settings.offline_after_s)
        with self.backends.sessions() as session:
            jobs = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
            oldest = session.execute(select(func.min(Job.created_at)).where(Job.state == JobState.queued)).scalar()
            online = session.execute(
                select(Device.model_version, func.count()).where(
                    Device.status == DeviceStatus.active, Device.last_seen >= online_since)
                .group_by(Device.model_version)).all()
            rollouts = dict(session.execute(select(Rollout.state, func.count()).group_by(Rollout.state)).all())
            expiry = session.execute(select(TufMetadata.role, func.max(TufMetadata.expires))
                                     .group_by(TufMetadata.role)).all()
        depth = GaugeMetricFamily("tinysphere_jobs", "Import jobs by state", labels=["state"])
        for state in JobState:
            depth.add_metric([state.value], jobs.get(state.value, 0))
        yield depth
        yield GaugeMetricFamily("tinysphere_jobs_parked", "Import jobs parked after too many failed attempts",
                                value=jobs.get(JobState.parked.value, 0))
        lag = (now - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily("tinysphere_queue_lag_seconds", "Age of the oldest queued import job (0 when none)",
                                value=max(0.0, lag))
        devices = GaugeMetricFamily("tinysphere_devices_online",
                                    "Active devices heard from within offline_after_s, by model version",
                                    labels=["model_version"])
        for version, count in online:
            devices.add_metric([version or ""], count)
        yield devices
        states = GaugeMetricFamily("tinysphere_rollouts", "Rollouts by state", labels=["state"])
        for rollout_state in RolloutState:
            states.add_metric([rollout_state.value], rollouts.get(rollout_state.value, 0))
        yield states
        tuf = GaugeMetricFamily("tinysphere_tuf_expiry_seconds", "Seconds until the newest metadata of a TUF role "
                                "expires (negative once expired)", labels=["role"])
        for role, expires in expiry:
            if role in TUF_ROLES:
                tuf.add_metric([role], (expires - now).total_seconds())
        yield tuf


def install(app: FastAPI, backends: Backends, prefixes: tuple[str, ...] = ()) -> CollectorRegistry:
    """A registry of `app`'s own, its request histogram (middleware; `prefixes`: the routers' include prefixes,
    so routes are labelled by their full template) and the database collector."""
    registry = CollectorRegistry()  # not the global one: each app (and test) has its own
    histogram = Histogram("tinysphere_http_request_duration_seconds", "HTTP request duration by route template",
                          ["route", "method", "status"], registry=registry)
    registry.register(DatabaseCollector(backends))
    app.state.metrics_registry = registry
    app.add_middleware(RequestMetrics, histogram=histogram, prefixes=prefixes)
    app.include_router(router)
    return registry


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition"}})
def metrics(request: Request, _: ViewerDep) -> Response:
    """The server's metrics in Prometheus' text format."""
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
