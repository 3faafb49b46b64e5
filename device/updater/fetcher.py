"""The HTTP side of the TUF client: every request carries the device secret; targets resume with HTTP Range.

A target is downloaded into a partial file named after its (hash-prefixed) URL, so a cut connection or a
reboot continues where it stopped. The partial is deleted once ngclient's length and hash check fails,
and never grows past the length the signed metadata allows (endless-data attack).

This module is the one retry layer of these requests (urllib3 itself tries each request once): a metadata
request is tried a few times, a target until `attempts` tries in a row made no progress; the waits come from
`device.backoff`, and are at least the server's Retry-After.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import urllib3
from tuf.api import exceptions
from tuf.ngclient import FetcherInterface

from device import backoff
from device.sync.retry import parse_retry_after

log = logging.getLogger(__name__)

_RETRY_STATUS = (429, 500, 502, 503, 504)
_METADATA_ATTEMPTS = 3  # tries of one metadata request (its body is small, and read by ngclient in one go)
# urllib3 retries nothing (this module does) but still follows a redirect or two
_ONE_TRY = urllib3.Retry(total=None, connect=False, read=False, other=0, redirect=2,
                         respect_retry_after_header=False)


class _Restart(Exception):  # noqa: N818 - control flow inside this module
    """The server's answer cannot continue the partial file: start again from byte 0."""


class _Unavailable(exceptions.DownloadHTTPError):
    """A 429 or 5xx answer: worth another try, after at least `retry_after` seconds if the server said so."""

    def __init__(self, url: str, status: int, retry_after: float | None) -> None:
        super().__init__(f"GET {url}: HTTP {status}", status)
        self.retry_after = retry_after


_TRANSIENT = (urllib3.exceptions.HTTPError, exceptions.SlowRetrievalError, OSError, _Unavailable)


class ResumableFetcher(FetcherInterface):
    """urllib3 fetcher with a bearer token; URLs under `resumable_prefix` are downloaded resumably."""

    def __init__(self, secret: str, partial_dir: Path, resumable_prefix: str, timeout_s: float = 20.0,
                 attempts: int = 5, backoff_s: float = 1.0, max_backoff_s: float = 30.0,
                 chunk_size: int = 64 << 10, sleep: Callable[[float], None] = time.sleep) -> None:
        self.partial_dir = partial_dir
        self.resumable_prefix = resumable_prefix
        self.attempts = attempts
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.chunk_size = chunk_size
        self._sleep = sleep
        self._headers = {"Authorization": f"Bearer {secret}", "User-Agent": "tinymlops-updater"}
        self._pool = urllib3.PoolManager(retries=_ONE_TRY, timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s))

    def _request(self, url: str, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
        """One GET; a 429 or 5xx answer is closed and raised as `_Unavailable`."""
        response = self._pool.request("GET", url, headers={**self._headers, **(headers or {})}, preload_content=False)
        if response.status in _RETRY_STATUS:
            response.close()
            raise _Unavailable(url, response.status, parse_retry_after(response.headers.get("Retry-After")))
        return response

    def _delay(self, failures: int, retry_after: float | None) -> float:
        """The wait after `failures` failed tries in a row; at least `retry_after` if the server said so."""
        return backoff.next_delay(failures, self.backoff_s, self.max_backoff_s, retry_after=retry_after)

    def _fetch(self, url: str) -> Iterator[bytes]:
        """Metadata: a few tries until the server answers; the body is streamed to ngclient."""
        failures = 0
        while True:
            try:
                response = self._request(url)
                break
            except _TRANSIENT as exc:
                failures += 1
                if failures >= _METADATA_ATTEMPTS:
                    raise
                log.info("GET %s failed: %s: %s", url, type(exc).__name__, exc)
                self._sleep(self._delay(failures, getattr(exc, "retry_after", None)))
        if response.status >= 400:
            response.close()  # never hand a connection with an unread body back to the pool
            raise exceptions.DownloadHTTPError(f"GET {url}: HTTP {response.status}", response.status)
        return self._chunks(response)

    def _chunks(self, response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        try:
            yield from response.stream(self.chunk_size)
        except urllib3.exceptions.TimeoutError as exc:
            raise exceptions.SlowRetrievalError from exc
        except urllib3.exceptions.HTTPError as exc:
            raise exceptions.DownloadError(f"connection failed mid-body: {exc}") from exc
        finally:
            response.close()  # the caller may stop early (too long): the connection cannot be reused then

    @contextmanager
    def download_file(self, url: str, max_length: int) -> Iterator[IO[bytes]]:
        """Metadata as ngclient does it; targets through a partial file that survives cuts and reboots."""
        if not url.startswith(self.resumable_prefix):
            with super().download_file(url, max_length) as f:
                yield f
            return
        part = self.partial_path(url)
        self._complete(url, part, max_length)
        try:
            with part.open("rb") as f:
                yield f
        except BaseException:
            part.unlink(missing_ok=True)  # its bytes failed verification (or the caller failed): start afresh
            raise
        part.unlink(missing_ok=True)

    def partial_path(self, url: str) -> Path:
        return self.partial_dir / f"{hashlib.sha256(url.encode()).hexdigest()[:32]}.part"

    def _complete(self, url: str, part: Path, max_length: int) -> None:
        """Append to `part` until it holds `max_length` bytes or the server says no more; bounded retries."""
        part.parent.mkdir(parents=True, exist_ok=True)
        failures, last_error = 0, ""
        best = part.stat().st_size if part.exists() else 0  # progress is a byte never held before
        while failures < self.attempts:
            have = part.stat().st_size if part.exists() else 0
            if have >= max_length:
                return
            retry_after = None  # seconds the server asked for (429, 503)
            try:
                if self._append(url, part, have, max_length):
                    return
            except _Restart:
                part.unlink(missing_ok=True)
            except _TRANSIENT as exc:
                last_error, retry_after = f"{type(exc).__name__}: {exc}", getattr(exc, "retry_after", None)
                log.info("download of %s cut at %d bytes: %s", url, part.stat().st_size if part.exists() else 0,
                         last_error)
            now = part.stat().st_size if part.exists() else 0
            gained, best = now > best, max(best, now)  # a restart from 0 regains nothing: no endless loop
            failures = 0 if gained else failures + 1
            if failures:
                self._sleep(self._delay(failures, retry_after))
        raise exceptions.DownloadError(f"GET {url}: no progress after {self.attempts} attempts ({last_error})")

    def _append(self, url: str, part: Path, offset: int, max_length: int) -> bool:
        """One request from `offset`; True when the server sent everything it had."""
        response = self._request(url, {"Range": f"bytes={offset}-"} if offset else None)
        try:
            if response.status == 416:
                raise _Restart
            if response.status >= 400:
                raise exceptions.DownloadHTTPError(f"GET {url}: HTTP {response.status}", response.status)
            if offset and not _continues(response, offset):
                offset = 0  # the server ignored or misread the Range header: take the whole body
            with part.open("r+b" if offset else "wb") as f:
                f.seek(offset)
                f.truncate()
                received = offset
                while chunk := response.read1(self.chunk_size):  # read1: keep every byte before a cut
                    received += len(chunk)
                    if received > max_length:
                        raise exceptions.DownloadLengthMismatchError(
                            f"GET {url}: more than the {max_length} bytes the signed metadata allow")
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            declared = response.headers.get("Content-Length")
            whole = declared is not None and declared.isdigit() and received - offset == int(declared)
            # shorter than signed and no body was cut: the object itself is short, and ngclient's length check
            # refuses it; without Content-Length the connection may have ended early without saying so
            return received >= max_length or whole
        except exceptions.DownloadLengthMismatchError:
            part.unlink(missing_ok=True)
            raise
        finally:
            response.close()


def _continues(response: urllib3.BaseHTTPResponse, offset: int) -> bool:
    """True if a 206 answer starts exactly at `offset`."""
    if response.status != 206:
        return False
    content_range = response.headers.get("Content-Range", "")
    return content_range.startswith(f"bytes {offset}-")
