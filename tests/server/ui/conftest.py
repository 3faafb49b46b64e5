"""Browser test fixtures: the real API + dashboard over loopback, a simulated fleet, and Debian's Chromium.

The services come from the `TINYMLOPS_TEST_*` variables (`scripts/services up`), or are started here.
Screenshots of every page go to `artifacts/ui/` (or `$TINYMLOPS_UI_ARTIFACTS`).
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import psycopg
import pytest
import uvicorn
from playwright.sync_api import Browser, Dialog, Page, Playwright, sync_playwright
from psycopg import sql
from sqlalchemy.engine import make_url

from server.app import create_app
from server.backends import Backends, open_backends
from server.cli import main
from server.config import Settings
from server.db.models import Role
from server.identity import create_api_token
from server.registry import offline
from server.startup import migrate
from tests.server import services
from tests.server.ui import fleet as fleet_factory
from tests.utils.wait import wait_until

ROOT = Path(__file__).resolve().parents[3]
ENV_VARS = ("TINYMLOPS_TEST_DATABASE_URL", "TINYMLOPS_TEST_S3_ENDPOINT")
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TINYMLOPS_UI_ARTIFACTS", ROOT / "artifacts" / "ui"))


@dataclass
class Stack:
    url: str
    backends: Backends
    tokens: dict[str, str]  # by role
    fleet: fleet_factory.Fleet


def _database(admin: str) -> str:
    name = f"tinysphere_ui_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(admin).set(database=name).render_as_string(hide_password=False)


def _drop(admin: str, url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name or "")))


def _serve(backends: Backends) -> tuple[str, uvicorn.Server, threading.Thread]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(backends), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, "uvicorn to start", interval=0.02)
    return f"http://127.0.0.1:{port}", server, thread


def _settings(env: dict[str, str], database_url: str, keys: Path) -> Settings:
    return Settings(
        environment="production", database_url=database_url, s3_endpoint=env["TINYMLOPS_TEST_S3_ENDPOINT"],
        s3_access_key=env["TINYMLOPS_TEST_S3_ACCESS_KEY"],
        s3_secret_key=env["TINYMLOPS_TEST_S3_SECRET_KEY"],  # type: ignore[arg-type]
        s3_timeout_s=5, bucket_prefix=f"ui{uuid.uuid4().hex[:8]}-", offline_after_s=600,
        tuf_snapshot_key_file=keys / "snapshot.key", tuf_timestamp_key_file=keys / "timestamp.key")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The server with its dashboard on a fresh database, a TUF repository, two bundles and a small fleet."""
    with services.environment(ENV_VARS) as env:
        admin_url = env["TINYMLOPS_TEST_DATABASE_URL"]
        database_url = _database(admin_url)
        tmp = tmp_path_factory.mktemp("ui")
        keys = tmp / "keys"
        offline.init(keys)
        settings = _settings(env, database_url, keys)
        migrate(database_url, settings)
        backends = open_backends(settings, database_url)
        backends.store.ensure_buckets()
        with backends.sessions() as session:
            tokens = {role.value: create_api_token(session, f"ui-{role.value}", role) for role in Role}
            session.commit()
        url, server, thread = _serve(backends)
        try:
            assert main(["keys", "push-root", "--dir", str(keys), "--server", url, "--token", tokens["admin"]]) == 0
            fleet_factory.publish_bundles(tmp, keys, url, tokens["operator"])
            with httpx2.Client(base_url=url, timeout=10) as http:
                fleet = fleet_factory.build(http, backends, tokens["operator"])
            yield Stack(url, backends, tokens, fleet)
        finally:
            server.should_exit = True
            thread.join(10)
            backends.close()
            _drop(admin_url, database_url)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless, sandbox off (containers), no background traffic to anywhere."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does)"
    launched = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True,
        args=["--no-sandbox", "--disable-background-networking", "--disable-component-update",
              "--disable-default-apps", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"])
    yield launched
    launched.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    """A fresh browser context (no cookies) that fails the test on any script error."""
    context = browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(8000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    def refuse(dialog: Dialog) -> None:  # no page of ours opens one: an injected script would
        errors.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    opened.on("dialog", refuse)
    yield opened
    context.close()
    assert not errors, errors


def login(page: Page, token: str, path: str = "/ui/") -> None:
    """Sign in through the form, as an operator would."""
    page.goto(f"/ui/login?next={path}")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{path}")


def shot(page: Page, name: str, full_page: bool = False) -> Path:
    """Save a screenshot of what the browser shows now (or of the whole page)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
