"""The dashboard's Content-Security-Policy in a real browser: only scripts with the page's nonce run, markup
that slipped into a page could not run any, and a drift sample opened on its own is a sandboxed image."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, Route

from tests.server.ui.conftest import Stack, login

TEMPLATES = Path(__file__).resolve().parents[3] / "server" / "ui" / "templates"
# Records every CSP violation, before any script of the page runs (init scripts are not subject to the CSP).
RECORD_VIOLATIONS = """
window.violations = [];
document.addEventListener("securitypolicyviolation",
    (e) => window.violations.push(e.effectiveDirective + " " + e.blockedURI));
"""


def _nonce(policy: str) -> str:
    found = re.search(r"script-src [^;]*'nonce-([A-Za-z0-9_-]+)'", policy)
    assert found, policy
    return found.group(1)


def test_every_page_has_a_fresh_nonce_and_every_script_carries_it(page: Page, stack: Stack) -> None:
    login(page, stack.tokens["operator"])
    kitchen = stack.fleet.devices["cam-kitchen"].device_id
    seen: set[str] = set()
    for path in ("/ui/", f"/ui/devices/{kitchen}", "/ui/drift", "/ui/registry", "/ui/rollouts", "/ui/rollouts/new",
                 "/ui/no-such-page", "/ui/"):
        response = page.goto(path)
        assert response is not None
        policy = response.headers["content-security-policy"]
        nonce = _nonce(policy)
        assert nonce not in seen, path
        seen.add(nonce)
        for directive in ("default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "'strict-dynamic'"):
            assert directive in policy, (path, directive)
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        nonces = page.locator("script").evaluate_all("scripts => scripts.map(s => s.nonce)")
        assert nonces and nonces == [nonce] * len(nonces), path


def test_markup_injected_into_a_page_runs_no_script(page: Page, stack: Stack) -> None:
    login(page, stack.tokens["operator"])
    page.add_init_script(RECORD_VIOLATIONS)

    def inject(route: Route) -> None:  # as if a template let a device's text through unescaped
        response = route.fetch()
        nonce = _nonce(response.headers["content-security-policy"])
        hostile = ('<script>window.injected = "inline"</script>'
                   '<img src="data:," onerror="window.injected = \'handler\'" alt="">'
                   '<script src="/ui/static/ui.js"></script>'
                   f'<script nonce="{nonce}">window.withNonce = true</script>')
        route.fulfill(response=response, body=response.text().replace("</main>", hostile + "</main>"))

    page.route("**/ui/drift", inject)
    page.goto("/ui/drift")
    page.wait_for_function("window.withNonce === true")  # the page's own nonce still works, so the rest ran too
    page.wait_for_function("window.violations.length >= 3")
    assert page.evaluate("window.injected") is None
    violations = page.evaluate("window.violations")
    assert "script-src-elem inline" in violations  # the inline <script>
    assert "script-src-attr inline" in violations  # the onerror= handler
    assert any(v.startswith("script-src-elem ") and v.endswith("/ui/static/ui.js") for v in violations), violations


def test_a_sample_opened_on_its_own_is_a_sandboxed_image(page: Page, stack: Stack) -> None:
    login(page, stack.tokens["viewer"], f"/ui/devices/{stack.fleet.devices['cam-kitchen'].device_id}")
    source = page.locator(".samples img").first.get_attribute("src")
    assert source and re.fullmatch(r"/ui/drift/\d+/sample", source)
    response = page.goto(source)
    assert response is not None and response.status == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"].split("; ")
    assert page.evaluate("document.images[0].naturalWidth") == 64  # the browser shows the image
    assert page.evaluate("window.origin") == "null"  # in an opaque origin: no cookies, no dashboard


def test_templates_hold_no_inline_script_or_event_handler() -> None:
    for template in sorted(TEMPLATES.glob("*.html")):
        text = template.read_text()
        assert not re.search(r"\son[a-z]+\s*=", text, re.IGNORECASE), template.name
        assert "javascript:" not in text.lower(), template.name
        for tag in re.findall(r"<script\b[^>]*>", text, re.IGNORECASE):
            assert 'src="/ui/static/' in tag and 'nonce="{{ csp_nonce }}"' in tag, (template.name, tag)
