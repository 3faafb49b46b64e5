"""An operator in a real browser: sign in, look at the fleet and a device, label a drift sample,
browse the registry, start a rollout, watch it advance without reloading, and pause it."""

from __future__ import annotations

import re

import httpx2
from playwright.sync_api import Page, expect

from server.rollouts import controller
from tests.server.ui.conftest import Stack, login, shot
from tests.server.ui.fleet import NEW, OLD, ROLLOUT_TAG, beat
from tests.server.utils import auth


def test_fleet_page_counts_and_filters(page: Page, stack: Stack) -> None:
    login(page, stack.tokens["operator"])
    response = page.goto("/ui/")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator("#count-total")).to_have_text("5")
    expect(page.locator("#count-offline")).to_have_text("1")  # cam-attic never sent a heartbeat
    expect(page.get_by_role("img", name=re.compile(r"Active devices by model version: 1\.0\.0: 4"))).to_be_visible()
    rows = page.locator("#devices tbody tr")
    expect(rows).to_have_count(5)
    expect(page.locator("tr.silent")).to_contain_text("cam-attic")
    shot(page, "fleet")

    page.get_by_label("Search").fill("garage")  # filters as you type
    expect(page.locator("#devices tbody tr:visible")).to_have_count(1)
    expect(page.locator("#shown")).to_have_text("1")

    page.get_by_label("Search").fill("")
    page.get_by_label("Tag").fill("lab")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(3)
    page.get_by_label("Tag").fill("")
    page.get_by_label("Offline only").check()
    page.get_by_role("button", name="Filter").press("Enter")  # keyboard works as well as the mouse
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("cam-attic")


def test_device_page_shows_state_charts_and_samples(page: Page, stack: Stack) -> None:
    login(page, stack.tokens["viewer"])
    page.get_by_role("link", name="cam-kitchen").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("cam-kitchen")
    expect(page.locator("#model-version")).to_have_text(OLD)
    expect(page.locator("#outbox-depth")).to_have_text("12")
    expect(page.locator("#evictions")).to_have_text("0")
    for chart in ("Latency p95 (ms): 40 points", "Confidence: 40 points", "Drift-alarm rate (alarms per 1000 frames)"):
        expect(page.get_by_role("img", name=re.compile(re.escape(chart)))).to_be_visible()
    samples = page.locator(".samples img")
    expect(samples).to_have_count(3)
    for i in range(3):  # the presigned sample images really load (allowed by the page's CSP)
        expect(samples.nth(i)).to_have_js_property("complete", True)
        assert samples.nth(i).evaluate("img => img.naturalWidth") == 64
    shot(page, "device", full_page=True)


def test_label_a_drift_sample_and_the_device_receives_it(page: Page, stack: Stack) -> None:
    device = stack.fleet.devices["cam-door"]
    login(page, stack.tokens["operator"], "/ui/drift")
    expect(page.locator("#events tbody tr")).to_have_count(4)
    shot(page, "drift")
    page.locator("#events tbody tr", has_text=device.device_id).get_by_role("link", name=re.compile("^#")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Drift event \d+"))
    expect(page.locator("img.sample")).to_have_js_property("complete", True)
    page.get_by_label("Correct label").fill("7")
    page.get_by_role("button", name="Send label to device").click()
    expect(page.get_by_role("status")).to_contain_text("Label queued")
    expect(page.locator("#label-table tbody")).to_contain_text("not yet")
    shot(page, "drift-event")

    with httpx2.Client(base_url=stack.url, timeout=10) as http:  # the device's next heartbeat carries it
        body = {"model_version": OLD, "update_state": "COMMITTED"}
        answer = http.post(f"/api/v1/devices/{device.device_id}/heartbeat", json=body, headers=device.headers).json()
        assert [label["label"] for label in answer["labels"]] == ["7"]
        body["acked_labels"] = [answer["labels"][0]["id"]]
        http.post(f"/api/v1/devices/{device.device_id}/heartbeat", json=body, headers=device.headers)
    page.reload()
    expect(page.locator("#label-table tbody")).not_to_contain_text("not yet")


def test_registry_shows_versions_lineage_and_signatures(page: Page, stack: Stack) -> None:
    login(page, stack.tokens["viewer"], "/ui/registry")
    table = page.get_by_role("table", name="Versions of digits")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table).to_contain_text("heldout_accuracy")
    expect(table).to_contain_text("digits v7")
    shot(page, "registry")
    page.get_by_role("link", name=NEW, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"digits {NEW}")
    expect(page.locator("#lineage")).to_contain_text("models:/digits@candidate")
    expect(page.locator("#signatures")).to_contain_text(re.compile(r"[0-9a-f]{64}"))
    expect(page.locator("#custom")).to_contain_text('"version"')
    shot(page, "bundle")


def _assigned_beat(http: httpx2.Client, stack: Stack, running: dict[str, str]) -> int:
    """Every rollout device reports in; those newly told to take the new bundle report it installed."""
    moved = 0
    for name in ("cam-kitchen", "cam-door", "cam-garage"):
        device = stack.fleet.devices[name]
        if beat(http, device, running[name], "COMMITTED")["bundle_version"] == NEW and running[name] != NEW:
            beat(http, device, NEW, "COMMITTED")
            running[name] = NEW
            moved += 1
    return moved


def test_start_a_rollout_watch_it_advance_and_pause_it(page: Page, stack: Stack) -> None:
    login(page, stack.tokens["operator"], "/ui/rollouts/new")
    page.get_by_label("Model").select_option("digits")
    page.get_by_label("Bundle version").fill(NEW)
    page.get_by_label("Devices having every tag").check()
    page.get_by_label("Tags").fill(ROLLOUT_TAG)
    page.get_by_label("Waves, one per line").fill("1 0\n100% 0")
    page.get_by_label("Max drift-alarm rate").fill("5")
    shot(page, "rollout-new")
    page.get_by_role("button", name="Start rollout").click()
    page.wait_for_url(re.compile(r"/ui/rollouts/\d+$"))
    rollout_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#rollout-state")).to_have_text("running")
    expect(page.locator("#decisions")).to_contain_text("3 device(s) in 2 wave(s)")
    page.evaluate("window.notReloaded = true")

    controller.tick(stack.backends)  # the worker's controller assigns wave 1
    expect(page.locator("#decisions")).to_contain_text("wave 1 of 2: 1 device(s) assigned")
    running = dict.fromkeys(("cam-kitchen", "cam-door", "cam-garage"), OLD)
    with httpx2.Client(base_url=stack.url, timeout=10) as http:
        assert _assigned_beat(http, stack, running) == 1
        controller.tick(stack.backends)  # updated and soaked: gates pass, wave 2 starts
        expect(page.locator("#current-wave")).to_have_text("2")
        expect(page.locator("#decisions")).to_contain_text("wave_passed")
        assert _assigned_beat(http, stack, running) == 2
    expect(page.locator("#waves tbody tr").nth(0)).to_contain_text("updated 1")
    assert page.evaluate("window.notReloaded") is True  # all of that arrived without a reload
    shot(page, "rollout")

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#rollout-state")).to_have_text("paused")
    expect(page.locator("#decisions")).to_contain_text("paused by ui-operator")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    with httpx2.Client(base_url=stack.url, timeout=10) as http:
        status = http.get(f"/api/v1/rollouts/{rollout_id}", headers=auth(stack.tokens["viewer"])).json()
    assert status["state"] == "paused" and status["current_wave"] == 1
    page.get_by_role("button", name="Abort and roll back").click()
    expect(page.locator("#rollout-state")).to_have_text("aborted")
    expect(page.locator("#decisions")).to_contain_text("device(s) sent back")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Rollouts").click()
    expect(page.locator("#rollouts tbody")).to_contain_text("aborted")
    shot(page, "rollouts")
