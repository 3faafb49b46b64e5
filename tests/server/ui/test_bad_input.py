"""What the dashboard refuses: bad or expired sessions, viewers changing things, invalid forms, missing
things, forged forms, and HTML where text belongs."""

from __future__ import annotations

import re
import time

import httpx2
from playwright.sync_api import Page, expect

from server.identity import authenticate_operator, token_hash
from server.ui import session as ui_session
from tests.server.ui.conftest import Stack, login, shot
from tests.server.ui.fleet import NEW, XSS_NAME
from tests.server.utils import auth


def _on_login_page(page: Page) -> None:
    expect(page).to_have_url(re.compile(r"/ui/login"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    expect(page.locator("body")).not_to_contain_text("cam-kitchen")


def test_a_wrong_token_stays_on_the_login_page(page: Page, stack: Stack) -> None:
    for token in ("tso_not-a-real-token", "tsd_a-device-secret", "<script>x</script>", ""):
        page.goto("/ui/login")
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        _on_login_page(page)
        if token:
            expect(page.get_by_role("alert")).to_contain_text("unknown, revoked, or not an operator API token")
        assert not [c for c in page.context.cookies() if c["name"] == ui_session.COOKIE]


def test_a_device_secret_cannot_sign_in(page: Page, stack: Stack) -> None:
    page.goto("/ui/login")
    page.get_by_label("API token").fill(stack.fleet.devices["cam-door"].secret)
    page.get_by_role("button", name="Sign in").press("Enter")
    _on_login_page(page)
    shot(page, "login-refused")


def test_every_page_needs_a_session(page: Page, stack: Stack) -> None:
    for path in ("/ui/", f"/ui/devices/{stack.fleet.devices['cam-kitchen'].device_id}", "/ui/drift",
                 f"/ui/drift/{stack.fleet.event_ids[0]}", "/ui/registry", "/ui/rollouts", "/ui/rollouts/new",
                 "/ui/no-such-page"):
        page.goto(path)
        _on_login_page(page)
    answer = page.request.get("/ui/rollouts/1/progress", headers={"X-Requested-With": "fetch"}, max_redirects=0)
    assert answer.status == 401
    with httpx2.Client(base_url=stack.url, timeout=10) as http:  # forms without a session do nothing
        posted = http.post(f"/ui/drift/{stack.fleet.event_ids[0]}/labels", data={"label": "x", "csrf": "x"})
        assert posted.status_code == 303 and posted.headers["location"].startswith("/ui/login")


def test_sign_in_returns_to_the_page_asked_for_but_never_to_another_site(page: Page, stack: Stack) -> None:
    page.goto("/ui/registry")
    page.get_by_label("API token").fill(stack.tokens["viewer"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/ui/registry$"))
    page.context.clear_cookies()
    page.goto("/ui/login?next=//evil.example/ui/")
    page.get_by_label("API token").fill(stack.tokens["viewer"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{stack.url}/ui/")


def _set_session(page: Page, stack: Stack, cookie: str) -> None:
    page.context.add_cookies([{"name": ui_session.COOKIE, "value": cookie, "url": f"{stack.url}/ui/"}])


def _token_row(stack: Stack, token: str) -> tuple[int, str]:
    with stack.backends.sessions() as session:
        operator = authenticate_operator(session, token)
        assert operator is not None
        return operator.token_id, token_hash(token)


def _issue(stack: Stack, token_id: int, now: float) -> str:
    with stack.backends.sessions() as session:
        cookie = ui_session.issue(session, token_id, now)
        session.commit()
    return cookie


def test_an_expired_or_forged_session_goes_back_to_login(page: Page, stack: Stack) -> None:
    token_id, _ = _token_row(stack, stack.tokens["operator"])
    _set_session(page, stack, _issue(stack, token_id, time.time() - ui_session.LIFETIME_S - 5))
    page.goto("/ui/")
    _on_login_page(page)
    fresh = _issue(stack, token_id, time.time())
    for forged in (fresh[:-4] + "0000", fresh[1:], "garbage", "1.2.3.4"):
        _set_session(page, stack, forged)
        page.goto("/ui/rollouts")
        _on_login_page(page)
    _set_session(page, stack, fresh)
    page.goto("/ui/rollouts")
    expect(page.get_by_role("heading", level=1)).to_have_text("Rollouts")


def test_a_revoked_token_ends_its_sessions(page: Page, stack: Stack) -> None:
    with httpx2.Client(base_url=stack.url, timeout=10) as http:
        created = http.post("/api/v1/tokens", json={"name": "short-lived", "role": "operator"},
                            headers=auth(stack.tokens["admin"])).json()
        login(page, created["token"])
        expect(page.locator("#count-total")).to_be_visible()
        assert http.delete(f"/api/v1/tokens/{created['id']}", headers=auth(stack.tokens["admin"])).status_code == 204
    page.reload()
    _on_login_page(page)


def test_sign_out(page: Page, stack: Stack) -> None:
    login(page, stack.tokens["viewer"])
    page.get_by_role("button", name="Sign out").click()
    _on_login_page(page)
    page.goto("/ui/")
    _on_login_page(page)


def test_a_viewer_may_look_but_not_start_a_rollout_or_label(page: Page, stack: Stack) -> None:
    login(page, stack.tokens["viewer"], "/ui/rollouts/new")
    expect(page.get_by_role("note")).to_contain_text("viewer role")
    page.get_by_label("Model").select_option("digits")
    page.get_by_label("Bundle version").fill(NEW)
    page.get_by_role("button", name="Start rollout").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    expect(page.get_by_role("alert")).to_contain_text("viewer role, which may look at the fleet but not change it")
    shot(page, "viewer-refused")
    page.goto(f"/ui/drift/{stack.fleet.event_ids[0]}")
    expect(page.get_by_label("Correct label")).to_have_count(0)
    expect(page.locator("#labels")).to_contain_text("may look at samples but not label them")
    with httpx2.Client(base_url=stack.url, timeout=10) as http:
        rollouts = http.get("/api/v1/rollouts", headers=auth(stack.tokens["viewer"])).json()["items"]
    assert all(r["created_by"] != "ui-viewer" for r in rollouts)


def test_forms_without_the_session_csrf_token_are_refused(page: Page, stack: Stack) -> None:
    login(page, stack.tokens["operator"])
    event = stack.fleet.event_ids[0]
    for csrf in ("", "not-the-token"):
        answer = page.request.post(f"/ui/drift/{event}/labels", form={"label": "cat", "csrf": csrf})
        assert answer.status == 403 and "CSRF check failed" in answer.text()
    page.goto(f"/ui/drift/{event}")
    expect(page.locator("#label-table tbody")).not_to_contain_text("cat")


def test_invalid_rollout_forms_show_each_fields_error(page: Page, stack: Stack) -> None:
    login(page, stack.tokens["operator"], "/ui/rollouts/new")
    page.get_by_label("Devices having every tag").check()
    page.get_by_label("Waves, one per line").fill("1 300\nhalf of them")
    page.get_by_label("Wave timeout (s)").fill("-5")
    page.get_by_label("Max error rate").fill("a lot")
    page.get_by_label("Min healthy fraction").fill("1.5")
    page.get_by_role("button", name="Start rollout").click()
    expect(page.locator("#form-errors")).to_be_visible()
    errors = {"model": "required", "bundle_version": "required", "tags": "give at least one",
              "waves": "line 2: write a size", "wave_timeout_s": "whole number of seconds",
              "max_error_rate": "must be a number"}
    for field, message in errors.items():
        expect(page.locator(f"#{field}-error")).to_contain_text(message)
        expect(page.locator(f"#{field}")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Waves, one per line")).to_have_value("1 300\nhalf of them")  # kept for fixing
    page.locator("#form-errors").get_by_role("link", name=re.compile("^Waves")).click()  # the summary leads there
    expect(page.get_by_label("Waves, one per line")).to_be_focused()
    shot(page, "rollout-invalid")

    page.get_by_label("Model").select_option("digits")
    page.get_by_label("Bundle version").fill("9.9.9")
    page.get_by_label("Tags").fill("no-such-tag")
    page.get_by_label("Waves, one per line").fill("0% 10\n100% 10")
    page.get_by_label("Wave timeout (s)").fill("600")
    page.get_by_label("Max error rate").fill("")
    page.get_by_role("button", name="Start rollout").click()
    expect(page.locator("#waves-error")).to_contain_text("wave 1: Input should be greater than 0")
    expect(page.locator("#min_healthy_fraction-error")).to_contain_text("less than or equal to 1")
    page.get_by_label("Waves, one per line").fill("1 10")
    page.get_by_label("Min healthy fraction").fill("0.9")
    page.get_by_role("button", name="Start rollout").click()
    expect(page.locator("#bundle_version-error")).to_contain_text("no bundle digits 9.9.9")
    page.get_by_label("Bundle version").fill(NEW)
    page.get_by_role("button", name="Start rollout").click()
    expect(page.locator("#tags-error")).to_contain_text("the selector matches no active device")
    page.get_by_label("Listed devices").check()
    page.get_by_role("button", name="Start rollout").click()
    expect(page.locator("#device_ids-error")).to_contain_text("give at least one")


def test_missing_things_are_a_404_page(page: Page, stack: Stack) -> None:
    login(page, stack.tokens["viewer"])
    for path in ("/ui/devices/dev-0000000000000000", "/ui/drift/999999999", "/ui/drift/abc", "/ui/rollouts/424242",
                 "/ui/registry/digits/9.9.9", "/ui/no/such/page", "/ui/devices/" + "x" * 60):
        response = page.goto(path)
        assert response is not None and response.status == 404, path
        expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    shot(page, "not-found")


def test_html_in_names_and_labels_is_shown_as_text(page: Page, stack: Stack) -> None:
    login(page, stack.tokens["operator"])
    device = stack.fleet.devices[XSS_NAME]
    expect(page.locator("#devices")).to_contain_text(XSS_NAME)
    expect(page.locator("#devices b")).to_have_count(0)
    page.get_by_role("link", name=XSS_NAME).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(XSS_NAME)
    expect(page.locator("main b, main img[src='x']")).to_have_count(0)
    assert page.title() != "pwned"
    assert device.device_id in page.url

    page.goto(f"/ui/drift/{stack.fleet.event_ids[0]}")
    page.get_by_label("Correct label").fill("<b>cat</b>")
    page.get_by_role("button", name="Send label to device").click()
    expect(page.locator("#label-error")).to_contain_text("A label is 1 to 64 letters")
    expect(page.get_by_label("Correct label")).to_have_value("<b>cat</b>")
    expect(page.locator("#labels b")).to_have_count(0)
