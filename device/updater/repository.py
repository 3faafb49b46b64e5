"""The server's TUF repository as this device trusts it: python-tuf's ngclient over the resumable,
authenticated fetcher, expiry judged at the trusted time. Failures become device errors here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

from tuf.api import exceptions
from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater, UpdaterConfig

from device.errors import DeviceAuthError, ServerUnavailableError, StateError, UpdateRejectedError
from device.updater.clock import TrustedClock
from device.updater.fetcher import ResumableFetcher
from device.updater.target import FileEntry

log = logging.getLogger(__name__)

MAX_TARGETS_METADATA = 2 << 20  # bytes; the targets role lists a few bundles per model


class BundleRepository:
    """One update round against `{server}/tuf/`: `lookup()` a target, then `download()` it."""

    def __init__(self, server_url: str, secret: str, tuf_dir: Path, downloads_dir: Path, clock: TrustedClock,
                 timeout_s: float = 20.0, attempts: int = 5, backoff_s: float = 1.0) -> None:
        base = server_url.rstrip("/")
        self.tuf_dir, self.downloads_dir, self.clock = tuf_dir, downloads_dir, clock
        self.metadata_url, self.targets_url = f"{base}/tuf/metadata/", f"{base}/tuf/targets/"
        self.fetcher = ResumableFetcher(secret, downloads_dir / "partial", self.targets_url, timeout_s=timeout_s,
                                        attempts=attempts, backoff_s=backoff_s)
        self._updater: Updater | None = None

    def _client(self) -> Updater:
        """A fresh ngclient per round (one refresh each), trusting tuf/root.json and its successors."""
        if not (self.tuf_dir / "root.json").exists():
            raise StateError("no pinned TUF root: the device is not provisioned for updates", self.tuf_dir)
        self.downloads_dir.mkdir(parents=True, exist_ok=True)
        # bootstrap=None: the root pinned at provisioning (and the rotations verified since) is the anchor
        updater = Updater(str(self.tuf_dir), self.metadata_url, str(self.downloads_dir), self.targets_url,
                          fetcher=self.fetcher, config=UpdaterConfig(targets_max_length=MAX_TARGETS_METADATA),
                          bootstrap=None)
        # ngclient judges expiry at the wall clock it read when it was built; a Pi has no RTC, so judge at
        # the trusted bound instead (python-tuf has no public knob for this; the attribute is pinned by a test)
        updater._trusted_set.reference_time = self.clock.reference_time()
        return updater

    def lookup(self, target_path: str) -> TargetFile:
        """Refresh the metadata and return the signed entry of `target_path`."""
        try:
            self._updater = self._client()
            reference = self._updater._trusted_set.reference_time
            self._updater.refresh()
            self.clock.vouch(reference)
            info = self._updater.get_targetinfo(target_path)
        except (exceptions.RepositoryError, exceptions.DownloadError, OSError) as exc:
            raise _wrap(exc, f"metadata for {target_path}") from exc
        if info is None:
            raise UpdateRejectedError(f"{target_path} is not a signed target of the repository", "unknown_target")
        return info

    def cached(self, info: TargetFile) -> Path | None:
        """The verified local copy of `info`, if one is already downloaded."""
        assert self._updater is not None, "lookup() first"
        found = self._updater.find_cached_target(info, str(self.local_path(info)))
        return Path(found) if found else None

    def download(self, info: TargetFile) -> Path:
        """Download (resuming) and verify the target against the signed length and hashes."""
        assert self._updater is not None, "lookup() first"
        path = self.local_path(info)
        try:
            return Path(self._updater.download_target(info, str(path)))
        except (exceptions.RepositoryError, exceptions.DownloadError, OSError) as exc:
            path.unlink(missing_ok=True)
            raise _wrap(exc, info.path) from exc

    def fetch_file(self, entry: FileEntry) -> Path:
        """The verified local copy of one file of a signed file list, from the metadata `lookup()` refreshed;
        refused when the file's own signed target is not what the list says."""
        assert self._updater is not None, "lookup() first"
        try:
            info = self._updater.get_targetinfo(entry.target)
        except (exceptions.RepositoryError, exceptions.DownloadError, OSError) as exc:
            raise _wrap(exc, f"metadata for {entry.target}") from exc
        if info is None:
            raise UpdateRejectedError(f"the signed file list names {entry.target}, which is not a signed target",
                                      "file_list_mismatch", retry=False)
        signed = (info.hashes.get("sha256"), info.length)
        if signed != (entry.sha256, entry.length):
            raise UpdateRejectedError(
                f"{entry.target} is signed as {str(signed[0])[:12]}… ({signed[1]} bytes), the file list says "
                f"{entry.sha256[:12]}… ({entry.length} bytes)", "file_list_mismatch", retry=False)
        return self.cached(info) or self.download(info)

    def local_path(self, info: TargetFile) -> Path:
        return self.downloads_dir / quote(info.path, safe="")


def _wrap(exc: BaseException, what: str) -> Exception:
    """A python-tuf or network failure as a device error: rejected (verification) or unavailable (network)."""
    name = type(exc).__name__
    if isinstance(exc, exceptions.DownloadHTTPError) and exc.status_code in (401, 403):
        return DeviceAuthError(f"{what}: the server refused the device secret", exc.status_code)
    if isinstance(exc, exceptions.ExpiredMetadataError):
        return UpdateRejectedError(f"{what}: {exc} (freeze attack, or the clock is ahead)", "metadata_expired")
    if isinstance(exc, exceptions.LengthOrHashMismatchError):
        return UpdateRejectedError(f"{what}: {exc}", "hash_mismatch")
    if isinstance(exc, exceptions.DownloadLengthMismatchError):
        return UpdateRejectedError(f"{what}: {exc}", "too_long")
    if isinstance(exc, exceptions.BadVersionNumberError):
        return UpdateRejectedError(f"{what}: {exc}", "rollback_attack")
    if isinstance(exc, exceptions.UnsignedMetadataError):
        return UpdateRejectedError(f"{what}: {exc}", "bad_signature")
    if isinstance(exc, exceptions.RepositoryError):
        return UpdateRejectedError(f"{what}: {name}: {exc}", "metadata_invalid")
    if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
        return StateError(f"{what}: {exc}")
    return ServerUnavailableError(f"{what}: {name}: {exc}")
