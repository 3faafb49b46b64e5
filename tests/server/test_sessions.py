"""Dashboard sessions live in PostgreSQL: signing out, expiry and token revocation end them on every replica."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx2
import pytest
from sqlalchemy import func, select

from server.config import Settings
from server.db.models import DashboardSession
from server.ui.session import COOKIE, LIFETIME_S
from tests.server.replicas import Clock, Fleet, client, replicas, session_cookie, sign_in
from tests.server.utils import auth
from tests.utils.databases import fresh_database


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock(time.time())


@pytest.fixture(scope="module")
def fleet(test_env: dict[str, str], clock: Clock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with fresh_database(test_env["TINYMLOPS_TEST_DATABASE_URL"], "tinysphere_replicas_") as url:
        settings = Settings(database_url=url, data_dir=tmp_path_factory.mktemp("sessions"))
        with replicas(url, settings, clock, tmp_path_factory.mktemp("objects")) as running:
            yield running


def _page(url: str, cookie: str, path: str = "/ui/", fetch: bool = False) -> httpx2.Response:
    """A request carrying only `cookie`, as a copy of it would be sent from anywhere."""
    headers = {"Cookie": f"{COOKIE}={cookie}", **({"X-Requested-With": "fetch"} if fetch else {})}
    with httpx2.Client(base_url=url, timeout=10) as http:
        return http.get(path, headers=headers)


def _signed_in(response: httpx2.Response) -> bool:
    if response.status_code == 303:
        assert response.headers["location"].startswith("/ui/login"), response.headers
        return False
    assert response.status_code == 200, (response.status_code, response.text[:300])
    return True


def _csrf(url: str, cookie: str) -> str:
    found = re.search(r'action="/ui/logout".*?name="csrf" value="([^"]+)"', _page(url, cookie).text, re.S)
    assert found, "no sign-out form"
    return found.group(1)


def _sign_out(url: str, cookie: str, csrf: str) -> httpx2.Response:
    with httpx2.Client(base_url=url, timeout=10) as http:
        return http.post("/ui/logout", data={"csrf": csrf}, headers={"Cookie": f"{COOKIE}={cookie}"})


def test_sign_out_refuses_a_copy_of_the_cookie_on_every_replica(fleet: Fleet) -> None:
    one, other = fleet.urls
    with client(one) as first, client(other) as second:
        kept = session_cookie(sign_in(first, fleet.tokens["operator"]))
        alongside = session_cookie(sign_in(second, fleet.tokens["operator"]))  # the same token, another browser
    assert kept != alongside
    assert all(_signed_in(_page(url, cookie)) for url in fleet.urls for cookie in (kept, alongside))
    csrf = _csrf(one, kept)
    signed_out = _sign_out(other, kept, csrf)
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/ui/login"
    assert "Max-Age=0" in signed_out.headers["set-cookie"]  # the browser forgets it; the server refuses copies
    for url in fleet.urls:
        assert not _signed_in(_page(url, kept))  # the copy kept after sign-out
        assert _page(url, kept, "/ui/rollouts/1/progress", fetch=True).status_code == 401
        assert _signed_in(_page(url, alongside))  # the token's other session goes on
    assert _sign_out(one, kept, csrf).headers["location"].startswith("/ui/login?next=")  # nothing left to end


def test_an_expired_session_is_refused(fleet: Fleet, clock: Clock) -> None:
    with client(fleet.urls[0]) as http:
        cookie = session_cookie(sign_in(http, fleet.tokens["viewer"]))
    clock.advance(LIFETIME_S - 1)
    assert _signed_in(_page(fleet.urls[1], cookie))
    clock.advance(1)
    assert not _signed_in(_page(fleet.urls[1], cookie))
    assert not _signed_in(_page(fleet.urls[0], cookie))
    with fleet.backends.sessions() as session:
        expired = select(func.count()).where(DashboardSession.expires_at <= func.to_timestamp(clock()))
        assert (session.scalar(expired) or 0) >= 1
        with client(fleet.urls[0]) as http:  # a sign-in clears out sessions that have expired
            session_cookie(sign_in(http, fleet.tokens["viewer"]))
        assert session.scalar(expired) == 0


def test_revoking_the_token_ends_its_sessions(fleet: Fleet) -> None:
    admin = auth(fleet.tokens["admin"])
    with httpx2.Client(base_url=fleet.urls[0], timeout=10) as api:
        created = api.post("/api/v1/tokens", json={"name": "short-lived", "role": "operator"}, headers=admin).json()
    with client(fleet.urls[1]) as http:
        cookie = session_cookie(sign_in(http, created["token"]))
    assert _signed_in(_page(fleet.urls[0], cookie))
    with httpx2.Client(base_url=fleet.urls[1], timeout=10) as api:
        assert api.delete(f"/api/v1/tokens/{created['id']}", headers=admin).status_code == 204
    assert not any(_signed_in(_page(url, cookie)) for url in fleet.urls)


@pytest.mark.parametrize("cookie", ["", "garbage", "1.2.3.4", "x" * 43, "y" * 4000])
def test_an_unknown_cookie_is_refused(fleet: Fleet, cookie: str) -> None:
    assert not _signed_in(_page(fleet.urls[0], cookie))


def test_the_cookie_holds_no_more_than_a_random_secret(fleet: Fleet) -> None:
    with client(fleet.urls[0]) as http:
        response = sign_in(http, fleet.tokens["operator"])
    cookie = session_cookie(response)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie)
    set_cookie = response.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie and "path=/ui" in set_cookie
    with fleet.backends.sessions() as session:
        stored = session.scalars(select(DashboardSession.secret_hash)).all()
    assert cookie not in stored and all(len(h) == 64 for h in stored)
