"""The sync task: deliver the outbox backlog package by package, and send heartbeats, until stopped.

Rows are deleted only after the server acknowledged their package with an answer that names this
device, this package id and the SHA-256 of these bytes. A package the server finds too large (413) is
split in halves, and a single record it still refuses is dropped and counted. A conflict (409, or an
answer naming other content) never deletes: it is an integrity incident, logged and counted
(`sync_conflicts` in the heartbeat and the health snapshot), and the same records go again under a
fresh id of this device; when that keeps failing the round ends with the records kept for the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device.errors import (
    PackageConflictError,
    PackageTooLargeError,
    RemoteError,
    ServerUnavailableError,
    StateError,
)
from device.outbox import Outbox
from device.sync.client import SyncClient
from device.sync.identity import Identity, attempt_key, load_identity, save_identity
from device.sync.package import Package
from device.sync.packer import Packer
from device.sync.settings import SyncSettings

log = logging.getLogger(__name__)
MAX_RENEWALS = 3  # fresh ids tried for one package in one round before the round ends (the records stay)
StatusFn = Callable[[], dict[str, Any]]
LabelsFn = Callable[[list[dict[str, Any]]], None]
DesiredFn = Callable[[dict[str, Any]], None]


class SyncLoop:
    """Runs inside an asyncio loop; blocking SQLite and packing work goes to a thread."""

    def __init__(self, outbox: Outbox, settings: SyncSettings, status: StatusFn | None = None,
                 on_labels: LabelsFn | None = None, on_desired: DesiredFn | None = None) -> None:
        self.outbox = outbox
        self.settings = settings
        self.status = status or dict
        self.on_labels = on_labels
        self.on_desired = on_desired
        self.client = SyncClient(settings.server_url, settings.client)
        self.identity: Identity | None = None
        self.packer: Packer | None = None
        self.delivered = 0  # records acknowledged by the server since start
        self.packages = 0
        self.bytes_sent = 0
        self.conflicts = 0  # integrity incidents since start: the server held other content under our id
        self._acked_labels: list[int] = []
        self.wake = asyncio.Event()
        self._enrolling = asyncio.Lock()  # heartbeat and sync both need the identity; enroll once

    async def run(self, stop: asyncio.Event) -> None:
        """Heartbeats and sync rounds until `stop` is set."""
        async with self.client:
            beats = asyncio.create_task(self._every(stop, self.settings.heartbeat_interval_s, self.heartbeat))
            try:
                await self._every(stop, self.settings.interval_s, self.sync, wake=self.wake)
            finally:
                beats.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beats

    async def _every(self, stop: asyncio.Event, interval: float, job: Callable[[], Any],
                     wake: asyncio.Event | None = None) -> None:
        name = getattr(job, "__name__", "sync")
        failing = False  # the server's trouble is said once, then once more when it is over
        while not stop.is_set():
            try:
                await job()
                if failing:
                    log.info("%s works again", name)
                    failing = False
            except RemoteError as exc:
                log.log(logging.DEBUG if failing else logging.WARNING, "%s failed: %s%s", name, exc,
                        "" if failing else " (retrying quietly until it works again)")
                failing = True
            except StateError as exc:
                log.error("%s", exc)
            except (sqlite3.Error, OSError) as exc:  # e.g. a full disk: the outbox degrades, the task goes on
                log.error("%s failed on local state: %s", getattr(job, "__name__", "sync"), exc)
            except Exception:  # a bug must not end syncing for good; the next round tries again
                log.exception("%s failed unexpectedly", getattr(job, "__name__", "sync"))
            waiters = [asyncio.ensure_future(stop.wait())] + ([asyncio.ensure_future(wake.wait())] if wake else [])
            await asyncio.wait(waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            if wake:
                wake.clear()

    async def ensure_identity(self) -> Identity:
        """The stored identity, or enroll with the one-time token and store the result."""
        async with self._enrolling:
            return await self._load_or_enroll()

    async def _load_or_enroll(self) -> Identity:
        if self.identity is None:
            path = Path(self.settings.identity_path)
            identity = await asyncio.to_thread(load_identity, path)
            if identity is None:
                if not self.settings.enrollment_token:
                    raise StateError("not enrolled and no enrollment token configured", path)
                hardware = {"machine": platform.machine(), "system": platform.system(), "node": platform.node()}
                key = await asyncio.to_thread(attempt_key, path)
                device_id, secret = await self.client.enroll(
                    self.settings.enrollment_token, self.settings.device_name, hardware, key)
                identity = Identity(device_id, secret)
                await asyncio.to_thread(save_identity, path, identity)
                log.info("enrolled as device %s", device_id)
            self.identity = identity
            self.client.secret = identity.secret
            self.packer = Packer(self.outbox.backlog, identity.device_id, self.settings.pack)
        return self.identity

    async def sync(self) -> int:
        """Deliver packages until the backlog is empty; records delivered."""
        await self.ensure_identity()
        assert self.packer is not None
        delivered = 0
        while (package := await asyncio.to_thread(self.packer.next_package)) is not None:
            delivered += await self.deliver(package)
        return delivered

    def counters(self) -> dict[str, int]:
        """What the sync task did since start, for the heartbeat and the health snapshot."""
        return {"sync_conflicts": self.conflicts, "sync_delivered": self.delivered, "sync_packages": self.packages}

    async def deliver(self, package: Package) -> int:
        """Upload one package (splitting it on 413, renewing its id on conflict); delete what was acknowledged."""
        assert self.packer is not None
        current: Package | None = package
        renewals = 0
        while current is not None:
            try:
                await self.client.put_package(current)
            except PackageTooLargeError as exc:
                log.warning("package %s (%d-%d) refused: %s", current.package_id, *current.range, exc)
                smaller = await asyncio.to_thread(self.packer.shrink, current)
                if smaller is None:
                    return await self._settle_too_large(current)
                current = smaller
                continue
            except PackageConflictError as exc:
                current = await self._renew(current, exc)
                renewals += 1
                if current is not None and renewals >= MAX_RENEWALS:
                    raise PackageConflictError(f"{renewals} conflicts in a row for seqs {current.seq_first}-"
                                               f"{current.seq_last}; the records are kept for the next round",
                                               exc.status) from exc
                continue
            self.packages += 1
            self.bytes_sent += len(current.body)
            n = await asyncio.to_thread(self.outbox.backlog.acknowledge, *current.range)
            self.delivered += n
            log.debug("package %s delivered: seqs %d-%d, %d records", current.package_id, *current.range, n)
            return n
        return 0

    async def _renew(self, package: Package, exc: PackageConflictError) -> Package | None:
        """Count and log an integrity incident; the same records under a fresh id (None: they are gone)."""
        assert self.packer is not None
        self.conflicts += 1
        log.warning("integrity incident %d: the server holds other content under package %s of this device "
                    "(seqs %d-%d), so it is not acknowledged; its records are kept and sent again under a "
                    "fresh id: %s", self.conflicts, package.package_id, *package.range, exc)
        return await asyncio.to_thread(self.packer.renew, package)

    async def _settle_too_large(self, package: Package) -> int:
        if len(package.body) < self.settings.pack.droppable_bytes:  # no real server limit is this low
            raise ServerUnavailableError(f"413 for a package of {len(package.body)} bytes; trying again later")
        await asyncio.to_thread(self.outbox.backlog.reject, *package.range)
        return 0

    async def heartbeat(self) -> dict[str, Any]:
        """Report state, receive desired state and labels; labels are acknowledged in the next beat."""
        identity = await self.ensure_identity()
        reply = await self.client.heartbeat(identity.device_id, self._report())
        self._acked_labels = []
        labels = [label for label in reply.get("labels") or [] if isinstance(label, dict)]
        if labels and self.on_labels:
            try:
                self.on_labels(labels)
                self._acked_labels = [int(label["id"]) for label in labels if "id" in label]
            except Exception:  # a faulty consumer must not stop the sync; the labels come again
                log.exception("label callback failed; the labels will be offered again")
        if self.on_desired and isinstance(reply.get("desired"), dict):
            self.on_desired(reply["desired"])
        return reply

    def _report(self) -> dict[str, Any]:
        status = dict(self.status())
        stats = self.outbox.stats()
        health = {**(status.pop("health", None) or {}), "outbox_bytes": stats["bytes"],
                  "outbox_dropped": stats["dropped"], "outbox_rejected": stats["rejected"],
                  "outbox_bound_bytes": stats["bound_bytes"], **self.counters()}
        return {**status, "outbox_depth": stats["depth"], "evictions": stats["evicted"], "health": health,
                "acked_labels": self._acked_labels}
