"""Staging one bundle: signed lookup, device checks, resumable verified download (of the files the slots
lack, when the target lists its files; of the tar otherwise), safe unpack, file hashes, signed-field
consistency and the smoke test, then the move into the inactive slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.bundle import Bundle, load_bundle
from device.errors import BundleError, UpdateRejectedError
from device.updater.archive import extract_bundle
from device.updater.assembly import assemble
from device.updater.settings import ArchiveLimits
from device.updater.slots import SLOTS, Slots
from device.updater.target import DeviceProfile, FileEntry, TargetSpec, check_bundle, check_spec, parse_spec

if TYPE_CHECKING:  # the TUF client and its cryptography are imported when a download starts (machine.py)
    from device.updater.repository import BundleRepository

log = logging.getLogger(__name__)

SmokeTest = Callable[[Path], Any]  # raises SmokeTestError when the bundle must not go live


class Installer:
    """Puts a verified, smoke-tested bundle into an inactive slot; the live slot is never touched."""

    def __init__(self, slots: Slots, device: DeviceProfile, smoke: SmokeTest, limits: ArchiveLimits) -> None:
        self.slots, self.device, self.smoke, self.limits = slots, device, smoke, limits

    def stage(self, repository: BundleRepository, target: str, model: str | None, version: str | None,
              slot: str) -> Bundle:
        """Everything before the switch; raises `UpdateRejectedError`, `BundleError` or a remote/state error."""
        info = repository.lookup(target)
        spec = parse_spec(info.custom, target)
        check_spec(spec, self.device, model, version)
        if spec.files is not None:
            return self._stage_files(repository, spec, slot)
        archive = repository.cached(info) or repository.download(info)
        log.info("downloaded and verified %s (%d bytes)", target, info.length)
        staging = self.slots.clear_staging()
        try:
            extract_bundle(archive, staging, self.limits)
            check_bundle(spec, load_bundle(staging))
            self.smoke(staging)
        except BaseException:
            self.slots.tidy()
            archive.unlink(missing_ok=True)  # signed, but unusable: a retry must not trust it either
            raise
        path = self.slots.install_staging(slot)
        archive.unlink(missing_ok=True)  # the SD card is small; the slot is the copy that counts
        return load_bundle(path, verify=False)

    def _stage_files(self, repository: BundleRepository, spec: TargetSpec, slot: str) -> Bundle:
        """The slot from the files both slots already hold plus the fetched rest, each checked by hash."""
        assert spec.files is not None
        staging = self.slots.clear_staging()
        live = self.slots.live()
        sources = [self.slots.path(s) for s in sorted(SLOTS, key=lambda s: s != live) if self.slots.path(s).is_dir()]
        fetched: list[Path] = []

        def fetch(entry: FileEntry) -> Path:
            path = repository.fetch_file(entry)
            fetched.append(path)
            return path

        try:
            assemble(staging, spec.files, sources, fetch)
            check_bundle(spec, load_bundle(staging))
            self.smoke(staging)
        except (UpdateRejectedError, BundleError):
            self.slots.tidy()
            for path in fetched:  # signed, but unusable together: a retry must not trust them either
                path.unlink(missing_ok=True)
            raise
        except BaseException:
            self.slots.tidy()  # verified downloads stay: the next round resumes from them
            raise
        path = self.slots.install_staging(slot)
        for done in fetched:
            done.unlink(missing_ok=True)
        return load_bundle(path, verify=False)
