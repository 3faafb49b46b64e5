"""Device-sent images on both object stores: only JPEG and PNG bytes are kept, and stored objects are
served with their checked type, `nosniff` and a sandboxing CSP, so a device cannot run script in the
dashboard's origin."""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from server.app import create_app
from server.backends import Backends
from server.db.models import Record
from server.storage.local import LocalStore
from server.worker.runner import Worker
from tests.server.utils import (
    EnrolledDevice,
    PackageSpec,
    auth,
    build_package,
    drift_record,
    enroll,
    record,
    sign_in,
    upload,
)

HTML = b"<html><body><script>fetch('/ui/').then(r => r.text()).then(alert)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.domain)"><rect/></svg>'


def _image(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, fmt)
    return out.getvalue()


PNG = _image("PNG")
JPEG = _image("JPEG")


@pytest.fixture(params=["s3", "local"])
def stack(request: pytest.FixtureRequest, backends: Backends, tmp_path: Path) -> Iterator[tuple[Backends, TestClient]]:
    """The API and worker on the S3 server or on a local directory (the embedded default)."""
    store = backends.store if request.param == "s3" else LocalStore(tmp_path / "objects")
    chosen = Backends(backends.settings, backends.engine, backends.sessions, store)
    chosen.store.ensure_buckets()
    with TestClient(create_app(chosen)) as client:
        yield chosen, client


def _import(stack: tuple[Backends, TestClient], operator_token: str, records: list[dict[str, object]],
            blobs: dict[str, bytes]) -> tuple[EnrolledDevice, dict[str, object]]:
    """Send one package as a new device, import it, and return the device and the package's status."""
    backends, client = stack
    device = enroll(client, operator_token)
    spec = PackageSpec(device.device_id, records, blobs)
    assert upload(client, device, spec.package_id, build_package(spec)).status_code == 201
    Worker(backends).drain()
    package = client.get(f"/api/v1/sync/packages/{spec.package_id}", headers=device.headers)
    assert package.status_code == 200, package.text
    return device, package.json()


def _events(client: TestClient, token: str, device_id: str) -> dict[int, dict[str, object]]:
    """Drift event details of a device, by seq."""
    listed = client.get("/api/v1/drift/events", params={"device_id": device_id}, headers=auth(token)).json()
    return {e["seq"]: client.get(f"/api/v1/drift/events/{e['id']}", headers=auth(token)).json()
            for e in listed["items"]}


def _assert_sandboxed(headers: Mapping[str, str], content_type: str) -> None:
    assert headers.get("content-type") == content_type
    assert headers.get("x-content-type-options") == "nosniff"
    policy = headers.get("content-security-policy", "")
    assert "default-src 'none'" in policy and "sandbox" in policy.split("; ")


def test_markup_samples_are_dropped_at_import_and_the_rest_is_kept(
        stack: tuple[Backends, TestClient], operator_token: str, viewer_token: str) -> None:
    backends, client = stack
    records = [drift_record(1, "blobs/x.html"), drift_record(2, "blobs/x.svg"), drift_record(3, "blobs/lie.jpg"),
               drift_record(4, "blobs/real.html"), record(5, "image", {"label": "cat"}, "blobs/p.svg"),
               record(6, "metric", {"name": "fps", "value": 5.0})]
    blobs = {"x.html": HTML, "x.svg": SVG, "lie.jpg": HTML, "real.html": PNG, "p.svg": SVG}
    device, package = _import(stack, operator_token, records, blobs)

    events = _events(client, viewer_token, device.device_id)
    assert sorted(events) == [1, 2, 3, 4]  # every record is imported, with or without its image
    assert [events[seq]["sample_url"] is None for seq in (1, 2, 3, 4)] == [True, True, True, False]
    for seq in (1, 2, 3, 5):
        for suffix in (".html", ".svg", ".jpg", ".png", ""):
            for bucket in ("drift-samples", "prediction-images"):
                assert not backends.store.exists(bucket, f"{device.device_id}/{seq}{suffix}"), (bucket, seq, suffix)
    # The PNG's key and type come from its bytes, not from the name the device gave it.
    assert backends.store.content_type("drift-samples", f"{device.device_id}/4.png") == "image/png"
    with backends.sessions() as session:
        ledger = session.scalar(select(func.count()).select_from(Record).where(Record.device_id == device.device_id))
    assert ledger == 6

    assert package["status"] == "imported"
    error = str(package["error"])
    assert error.startswith("4 blob(s) dropped, their records imported without them: ")
    assert "seq 1 (blobs/x.html): not a JPEG or PNG image (it starts with b'<html><b')" in error
    assert "seq 2 (blobs/x.svg): not a JPEG or PNG image (it starts with b'<svg xml')" in error
    assert "seq 3 (blobs/lie.jpg)" in error and "seq 5 (blobs/p.svg)" in error and "seq 4" not in error


def test_images_are_served_with_their_checked_type_nosniff_and_a_sandbox(
        stack: tuple[Backends, TestClient], operator_token: str, viewer_token: str) -> None:
    backends, client = stack
    device, package = _import(stack, operator_token, [drift_record(1, "blobs/a.jpg"), drift_record(2, "blobs/b.svg")],
                              {"a.jpg": JPEG, "b.svg": PNG})
    assert package["status"] == "imported" and package["error"] is None
    events = _events(client, viewer_token, device.device_id)

    sign_in(client, viewer_token)
    for seq, content_type, data in ((1, "image/jpeg", JPEG), (2, "image/png", PNG)):
        answer = client.get(f"/ui/drift/{events[seq]['id']}/sample")
        assert answer.status_code == 200 and answer.content == data
        _assert_sandboxed(answer.headers, content_type)
        assert answer.headers["content-disposition"] == "inline"

    url = str(events[2]["sample_url"])  # the API's presigned URL: the API itself or the S3 server
    if isinstance(backends.store, LocalStore):
        answer = client.get(url)
        assert answer.content == PNG
        _assert_sandboxed(answer.headers, "image/png")
        assert answer.headers["content-disposition"] == "inline"
    else:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == PNG and response.headers["Content-Type"] == "image/png"


def test_the_dashboard_serves_no_stored_sample_that_is_not_an_image(
        stack: tuple[Backends, TestClient], operator_token: str, viewer_token: str) -> None:
    backends, client = stack
    device, _ = _import(stack, operator_token, [drift_record(1, "blobs/a.jpg")], {"a.jpg": JPEG})
    event = _events(client, viewer_token, device.device_id)[1]
    sign_in(client, viewer_token)
    assert client.get(f"/ui/drift/{event['id']}/sample").content == JPEG
    # As a sample stored before images were checked: markup under the key of a JPEG.
    backends.store.put_bytes("drift-samples", f"{device.device_id}/1.jpg", HTML, "image/jpeg")
    answer = client.get(f"/ui/drift/{event['id']}/sample")
    assert answer.status_code == 404 and b"<script>" not in answer.content
    assert client.get("/ui/drift/999999999/sample").status_code == 404


def test_local_objects_other_than_images_are_attachments(tmp_path: Path, backends: Backends) -> None:
    store = LocalStore(tmp_path)
    store.ensure_buckets()
    legacy = store.path("drift-samples", "d/1.html")  # written before types were stored: no type beside it
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(HTML)
    store.put_bytes("data-logs", "d/p.jsonl", b'{"seq": 1}\n', "application/x-ndjson")
    local = Backends(backends.settings, backends.engine, backends.sessions, store)
    with TestClient(create_app(local)) as client:
        answer = client.get(store.presigned_get_url("drift-samples", "d/1.html", 60))
        assert answer.content == HTML
        _assert_sandboxed(answer.headers, "application/octet-stream")
        assert answer.headers["content-disposition"] == "attachment"
        answer = client.get(store.presigned_get_url("data-logs", "d/p.jsonl", 60))
        _assert_sandboxed(answer.headers, "application/x-ndjson")
        assert answer.headers["content-disposition"] == "attachment"


def test_every_response_forbids_sniffing(client: TestClient) -> None:
    for path in ("/healthz", "/ui/static/ui.js", "/ui/login", "/api/v1/drift/events"):
        answer = client.get(path)
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["referrer-policy"] == "no-referrer", path
