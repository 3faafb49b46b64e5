"""What a device lost in crashes, as its heartbeat reports it: in the device API and on the device page."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.server.utils import auth, enroll, sign_in


def test_the_records_a_device_lost_in_crashes_are_shown_in_its_api_and_on_its_page(
    client: TestClient, viewer_token: str, operator_token: str
) -> None:
    device = enroll(client, operator_token)
    page = f"/ui/devices/{device.device_id}"
    sign_in(client, viewer_token)
    assert re.search(r'<dd id="lost-in-crash">0</dd>', client.get(page).text)  # before any report: none known
    health = {"lost_in_crash": 17, "outbox_dropped": 4, "frames": 900}
    answer = client.post(f"/api/v1/devices/{device.device_id}/heartbeat", json={"health": health},
                         headers=device.headers)
    assert answer.status_code == 200, answer.text
    detail = client.get(f"/api/v1/devices/{device.device_id}", headers=auth(viewer_token)).json()
    assert detail["health"]["lost_in_crash"] == 17 and detail["health"]["outbox_dropped"] == 4  # kept apart
    html = client.get(page).text
    assert re.search(r'<dt>Lost in crash</dt><dd id="lost-in-crash">17</dd>', html)
    assert html.count(">17<") == 1 and "<dt>outbox_dropped</dt><dd>4</dd>" in html  # shown once, drops beside it
