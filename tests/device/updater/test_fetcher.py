"""The fetcher is the one retry layer: busy answers (429/5xx) and dead connections are tried again with the
shared backoff, at least the server's Retry-After; urllib3 underneath sends each request once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tuf.api import exceptions

from device.updater.fetcher import ResumableFetcher
from tests.device.updater.tuf_server import SECRET

BODY = b"x" * 5000


class Scripted:
    """Answers each GET with the next scripted (status, headers) until the script is spent, then 200 and BODY."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.requests: list[str] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                scripted.requests.append(self.path)
                status, headers = scripted.script.pop(0) if scripted.script else (200, {})
                body = BODY if status == 200 else b"busy"
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    threading.Thread(target=server.server.serve_forever, daemon=True).start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def fetcher(tmp_path: Path, base: str, slept: list[float], attempts: int = 5) -> ResumableFetcher:
    return ResumableFetcher(SECRET, tmp_path, f"{base}/tuf/targets/", attempts=attempts, backoff_s=0.5,
                            max_backoff_s=30.0, sleep=slept.append)


def test_a_busy_target_is_tried_again_after_retry_after(tmp_path: Path, scripted: Scripted) -> None:
    scripted.script = [(503, {"Retry-After": "3"}), (429, {})]
    slept: list[float] = []
    with fetcher(tmp_path, scripted.url, slept).download_file(f"{scripted.url}/tuf/targets/a", len(BODY)) as f:
        assert f.read() == BODY
    assert len(scripted.requests) == 3
    assert 3 <= slept[0] <= 3.3 and 0.5 <= slept[1] <= 1.0  # Retry-After, then the second backoff step


def test_a_target_busy_every_time_ends_after_attempts_requests(tmp_path: Path, scripted: Scripted) -> None:
    scripted.script = [(503, {})] * 10
    slept: list[float] = []
    with pytest.raises(exceptions.DownloadError, match="no progress after 3 attempts"), \
            fetcher(tmp_path, scripted.url, slept, attempts=3).download_file(f"{scripted.url}/tuf/targets/a", 10):
        pass
    assert len(scripted.requests) == 3  # one layer: urllib3 does not try again underneath
    assert all(step / 2 <= s <= step for s, step in zip(slept, [0.5, 1.0, 2.0], strict=True))


def test_metadata_is_tried_a_few_times(tmp_path: Path, scripted: Scripted) -> None:
    scripted.script = [(502, {}), (503, {})]
    slept: list[float] = []
    url = f"{scripted.url}/tuf/metadata/timestamp.json"
    with fetcher(tmp_path, scripted.url, slept).download_file(url, len(BODY)) as f:
        assert f.read() == BODY
    assert len(scripted.requests) == 3 and len(slept) == 2

    scripted.requests, scripted.script = [], [(503, {})] * 5
    with pytest.raises(exceptions.DownloadHTTPError) as busy, \
            fetcher(tmp_path, scripted.url, slept).download_file(url, len(BODY)):
        pass
    assert busy.value.status_code == 503 and len(scripted.requests) == 3


def test_missing_metadata_is_not_retried(tmp_path: Path, scripted: Scripted) -> None:
    """ngclient learns from a 404 that there is no newer root: it must come at once."""
    scripted.script = [(404, {})]
    slept: list[float] = []
    with pytest.raises(exceptions.DownloadHTTPError) as missing, \
            fetcher(tmp_path, scripted.url, slept).download_file(f"{scripted.url}/tuf/metadata/2.root.json", 100):
        pass
    assert missing.value.status_code == 404 and len(scripted.requests) == 1 and slept == []


def test_an_unreachable_server_is_tried_a_few_times(tmp_path: Path) -> None:
    slept: list[float] = []
    base = "http://127.0.0.1:9"
    with pytest.raises(exceptions.DownloadError), \
            fetcher(tmp_path, base, slept).download_file(f"{base}/tuf/metadata/timestamp.json", 100):
        pass
    assert len(slept) == 2
