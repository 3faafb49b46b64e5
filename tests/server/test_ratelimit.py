"""Limits on failed credential attempts: one count for every replica, 429 with Retry-After, decay by window."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import delete, func, select

from server.config import Settings
from server.db.models import CredentialFailure
from server.errors import TooManyAttemptsError
from server.ratelimit import CredentialLimits, Kind, client_network
from server.ui.session import COOKIE
from tests.server.replicas import Clock, Fleet, client, replicas, session_cookie, sign_in
from tests.server.utils import auth
from tests.utils.databases import fresh_database

WINDOW_S = 300
ATTACKER, OPERATOR = "203.0.113.7", "198.51.100.2"
Start = Callable[..., Fleet]


@pytest.fixture(scope="module")
def database(test_env: dict[str, str]) -> Iterator[str]:
    with fresh_database(test_env["TINYMLOPS_TEST_DATABASE_URL"], "tinysphere_replicas_") as url:
        yield url


@pytest.fixture
def clock() -> Clock:
    return Clock(time.time())


@pytest.fixture
def start(database: str, clock: Clock, tmp_path: Path) -> Iterator[Start]:
    """Starts two replicas with the given limits on the module's database, with no failures counted yet."""
    with ExitStack() as stack:
        def begin(per_address: int = 1000, per_credential: int = 1000) -> Fleet:
            settings = Settings(database_url=database, data_dir=tmp_path, auth_failure_window_s=WINDOW_S,
                                auth_failures_per_address=per_address, auth_failures_per_credential=per_credential)
            fleet = stack.enter_context(replicas(database, settings, clock, tmp_path))
            with fleet.backends.sessions() as session:
                session.execute(delete(CredentialFailure))
                session.commit()
            return fleet

        yield begin


def _wrong(prefix: str = "tso_") -> str:
    return prefix + secrets.token_urlsafe(32)


def _devices(url: str, token: str, address: str) -> httpx2.Response:
    with client(url, address) as http:
        return http.get("/api/v1/devices", headers=auth(token))


def _refused(response: httpx2.Response, retry_after_s: int) -> None:
    assert response.status_code == 429, (response.status_code, response.text[:300])
    assert response.headers["Retry-After"] == str(retry_after_s)


def test_replicas_share_one_count_and_a_lockout_refuses_the_right_token_too(start: Start, clock: Clock) -> None:
    fleet = start(per_address=4)
    one, other = fleet.urls
    operator = fleet.tokens["operator"]
    for attempt in range(4):  # alternating replicas, a new wrong token each time: only the address adds up
        assert _devices(fleet.urls[attempt % 2], _wrong(), ATTACKER).status_code == 401
    _refused(_devices(one, _wrong(), ATTACKER), WINDOW_S)
    clock.advance(100)
    _refused(_devices(other, _wrong(), ATTACKER), WINDOW_S - 100)
    _refused(_devices(one, operator, ATTACKER), WINDOW_S - 100)  # no oracle: right or wrong, 429
    assert _devices(other, operator, OPERATOR).status_code == 200  # someone else is not locked out
    clock.advance(WINDOW_S - 100 - 1)
    _refused(_devices(other, operator, ATTACKER), 1)
    clock.advance(1)  # the window has passed: the lockout decays on its own
    assert _devices(one, operator, ATTACKER).status_code == 200
    assert _devices(other, _wrong(), ATTACKER).status_code == 401  # and a new window starts counting
    with fleet.backends.sessions() as session:
        assert session.scalar(select(CredentialFailure.failures).where(
            CredentialFailure.key == f"bearer:{ATTACKER}")) == 1


def test_a_credential_prefix_is_limited_from_any_address(start: Start) -> None:
    fleet = start(per_credential=3)
    operator, admin = fleet.tokens["operator"], fleet.tokens["admin"]
    for index in range(3):  # someone who knows the token's first characters, from three addresses
        guess = operator[:12] + secrets.token_urlsafe(32)[: len(operator) - 12]
        assert _devices(fleet.urls[index % 2], guess, f"192.0.2.{index + 1}").status_code == 401
    _refused(_devices(fleet.urls[1], operator, OPERATOR), WINDOW_S)
    assert _devices(fleet.urls[0], admin, OPERATOR).status_code == 200  # any other token goes on working
    assert _devices(fleet.urls[0], operator[:-1], OPERATOR).status_code == 429


def test_enrollment_is_limited_and_a_valid_token_survives_the_lockout(start: Start, clock: Clock) -> None:
    fleet = start(per_address=3)
    with client(fleet.urls[0], OPERATOR) as http:
        enrollment = http.post("/api/v1/enrollment-tokens", json={}, headers=auth(fleet.tokens["operator"]))
    token = enrollment.json()["token"]

    def enroll(url: str, bearer: str) -> httpx2.Response:
        with client(url, ATTACKER) as http:
            return http.post("/api/v1/devices/enroll", json={"hardware": {}}, headers=auth(bearer))

    for attempt in range(3):
        assert enroll(fleet.urls[attempt % 2], _wrong("tse_")).status_code == 401
    _refused(enroll(fleet.urls[1], token), WINDOW_S)
    assert _devices(fleet.urls[0], fleet.tokens["viewer"], ATTACKER).status_code == 200  # other kinds count apart
    clock.advance(WINDOW_S)
    assert enroll(fleet.urls[0], token).status_code == 201  # not spent while it was refused


def test_a_heartbeat_from_a_locked_address_is_refused(start: Start, clock: Clock) -> None:
    fleet = start(per_address=2)
    with client(fleet.urls[0], OPERATOR) as http:
        token = http.post("/api/v1/enrollment-tokens", json={}, headers=auth(fleet.tokens["operator"])).json()
        device = http.post("/api/v1/devices/enroll", json={"hardware": {}}, headers=auth(token["token"])).json()

    def beat(url: str, secret: str, address: str) -> httpx2.Response:
        with client(url, address) as http:
            return http.post(f"/api/v1/devices/{device['device_id']}/heartbeat", json={}, headers=auth(secret))

    assert beat(fleet.urls[0], _wrong("tsd_"), ATTACKER).status_code == 401
    assert beat(fleet.urls[1], _wrong("tsd_"), ATTACKER).status_code == 401
    _refused(beat(fleet.urls[0], device["device_secret"], ATTACKER), WINDOW_S)
    assert beat(fleet.urls[1], device["device_secret"], OPERATOR).status_code == 200
    clock.advance(WINDOW_S)
    assert beat(fleet.urls[0], device["device_secret"], ATTACKER).status_code == 200


def test_dashboard_sign_in_is_limited_and_the_form_says_so(start: Start, clock: Clock) -> None:
    fleet = start(per_address=3)
    for attempt in range(3):
        with client(fleet.urls[attempt % 2], ATTACKER) as http:
            refused = sign_in(http, _wrong())
        assert refused.status_code == 401 and "unknown, revoked" in refused.text
    with client(fleet.urls[1], ATTACKER) as http:
        throttled = sign_in(http, fleet.tokens["operator"])
        assert COOKIE not in http.cookies
    _refused(throttled, WINDOW_S)
    assert 'role="alert"' in throttled.text
    assert "Too many failed sign-ins" in throttled.text and "try again in 5 minutes" in throttled.text
    with client(fleet.urls[0], OPERATOR) as http:
        session_cookie(sign_in(http, fleet.tokens["operator"]))
    clock.advance(WINDOW_S - 30)
    with client(fleet.urls[0], ATTACKER) as http:
        assert "try again in 30 seconds" in sign_in(http, fleet.tokens["operator"]).text
    clock.advance(30)
    with client(fleet.urls[0], ATTACKER) as http:
        session_cookie(sign_in(http, fleet.tokens["operator"]))


def test_successful_authentication_writes_nothing(start: Start) -> None:
    fleet = start(per_address=1, per_credential=1)
    with client(fleet.urls[0], OPERATOR) as http:
        for _ in range(5):
            assert http.get("/api/v1/devices", headers=auth(fleet.tokens["viewer"])).status_code == 200
        session_cookie(sign_in(http, fleet.tokens["operator"]))
        assert http.get("/api/v1/devices").status_code == 401  # no token at all: nothing to count either
        assert http.get("/api/v1/devices", headers=auth("not-a-token")).status_code == 401
    with fleet.backends.sessions() as session:
        assert session.scalar(select(func.count()).select_from(CredentialFailure)) == 0


def test_windows_count_and_expire_exactly(start: Start, clock: Clock) -> None:
    fleet = start()
    limits = CredentialLimits(window_s=60, per_address=3, per_credential=100, clock=clock)
    keys = limits.keys(Kind.login, "192.0.2.1", "tso_abcdefgh-rest")
    other = limits.keys(Kind.login, "192.0.2.2", "tso_zzzzzzzz-rest")
    t0 = datetime.fromtimestamp(clock(), UTC)

    def rows() -> dict[str, tuple[int, datetime | None]]:
        with fleet.backends.sessions() as session:
            found = session.execute(select(CredentialFailure.key, CredentialFailure.failures,
                                           CredentialFailure.blocked_until))
            return {key: (failures, blocked) for key, failures, blocked in found}

    with fleet.backends.sessions() as session:
        limits.failed(session, other)
        for _ in range(3):
            limits.check(session, keys)
            limits.failed(session, keys)
            clock.advance(10)
        session.commit()
    assert rows()[keys[0].name] == (3, t0 + timedelta(seconds=60))  # blocked until the window ends
    assert rows()[keys[1].name] == (3, None)
    with fleet.backends.sessions() as session, pytest.raises(TooManyAttemptsError, match="again in 30 s") as refused:
        limits.check(session, keys)
    assert refused.value.retry_after_s == 30
    clock.advance(30)
    with fleet.backends.sessions() as session:
        limits.check(session, keys)
        limits.failed(session, keys)  # a new window; the expired one of `other` is cleared out
        session.commit()
    assert rows() == {keys[0].name: (1, None), keys[1].name: (1, None)}


@pytest.mark.parametrize(("address", "network"), [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("testclient", "testclient"),
])
def test_an_ipv6_host_counts_by_its_64(address: str, network: str) -> None:
    assert client_network(address) == network


def test_keys_hold_no_secret() -> None:
    token = "tso_" + secrets.token_urlsafe(32)
    assert CredentialLimits.from_settings(Settings()) == CredentialLimits()  # the same defaults
    keys = CredentialLimits().keys(Kind.bearer, "192.0.2.7", token)
    assert [key.limit for key in keys] == [30, 10]
    assert keys[0].name == "bearer:192.0.2.7" and keys[1].name.startswith("credential:")
    assert token[4:12] not in keys[1].name
    assert keys[1] == CredentialLimits().keys(Kind.login, "192.0.2.8", token[:12] + "x")[1]  # shared across kinds
    with pytest.raises(ValueError, match="at least 1"):
        CredentialLimits(window_s=0)
