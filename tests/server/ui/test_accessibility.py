"""Accessibility basics on every page: labelled controls, described images, keyboard-only use, contrast."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.server.ui.conftest import Stack, login

# Controls without an accessible name, images without alt text, and the worst text contrast on the page.
AUDIT = """() => {
  const named = (el) => el.labels?.length || el.getAttribute("aria-label")
    || (el.tagName === "BUTTON" && el.textContent.trim());
  const controls = [...document.querySelectorAll("input:not([type=hidden]), select, textarea, button")];
  const unnamed = controls.filter((el) => !named(el)).map((el) => el.outerHTML.slice(0, 80));
  const images = [...document.querySelectorAll("img")].filter((img) => !img.alt)
    .map((img) => img.outerHTML.slice(0, 80));
  const rgb = (text) => text.match(/[\\d.]+/g).slice(0, 4).map(Number);
  const lum = ([r, g, b]) => [r, g, b]
    .map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  let worst = [99, ""];
  for (const el of document.querySelectorAll("main *, header *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.closest("svg") || !el.getClientRects().length) continue;
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < worst[0]) worst = [ratio, el.outerHTML.slice(0, 80)];
  }
  return {unnamed, images, worst};
}"""


def test_every_page_has_labelled_controls_and_readable_contrast(page: Page, stack: Stack) -> None:
    login(page, stack.tokens["operator"])
    device = stack.fleet.devices["cam-kitchen"].device_id
    for path in ("/ui/", f"/ui/devices/{device}", "/ui/drift", f"/ui/drift/{stack.fleet.event_ids[-1]}",
                 "/ui/registry", "/ui/registry/digits/1.0.0", "/ui/rollouts", "/ui/rollouts/new", "/ui/login"):
        page.goto(path)
        found = page.evaluate(AUDIT)
        assert found["unnamed"] == [] and found["images"] == [], (path, found)
        assert found["worst"][0] >= 4.5, (path, found["worst"])  # WCAG AA for normal text


def test_the_dashboard_works_from_the_keyboard(page: Page, stack: Stack) -> None:
    page.goto("/ui/login")
    expect(page.get_by_label("API token")).to_be_focused()  # autofocus: type right away
    page.keyboard.type(stack.tokens["operator"])
    page.keyboard.press("Enter")
    expect(page.locator("#count-total")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    for _ in range(4):  # brand is text; Fleet, Drift, Registry, Rollouts are links
        page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Rollouts", exact=True).first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Rollouts")
