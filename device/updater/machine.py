"""The updater: one `step()` at a time through the state machine of `record.py`, resumable after any crash.

Each handler does one piece of work and ends with one persisted transition (or a persisted progress
update); `recover()` on start repairs whatever an interruption left half-done.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.atomic import read_json
from contract.bundle import load_bundle
from device.errors import BundleError, RemoteError, StateError, TinyLCMError, UpdateRejectedError
from device.sync.identity import load_identity
from device.updater.clock import TrustedClock
from device.updater.health import HealthSample, read_health
from device.updater.install import Installer, SmokeTest
from device.updater.probation import judge, observe
from device.updater.record import RESTING, Journal, State, UpdateRecord
from device.updater.settings import UpdaterSettings
from device.updater.slots import Slots
from device.updater.smoke import run_smoke_test
from device.updater.target import DeviceProfile, detect_device_type, detect_tflite_version
from device.updater.watchdog import Watchdog

if TYPE_CHECKING:
    from device.updater.repository import BundleRepository

log = logging.getLogger(__name__)


def read_desired(path: Path) -> dict[str, Any]:
    """The desired state the inference service last received with a heartbeat ({} when none)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Updater:
    """The device's model updater; `run()` loops `step()` until stopped."""

    def __init__(self, settings: UpdaterSettings, *, device: DeviceProfile | None = None,
                 smoke: SmokeTest | None = None, health: Callable[[], HealthSample] | None = None,
                 watchdog: Watchdog | None = None, watchdog_kind: str | None = None,
                 clock: TrustedClock | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.journal = Journal(settings.state_path, settings.history_limit)
        self.slots = Slots(settings.models_dir)
        self.clock = clock or TrustedClock(settings.clock_path)
        self.device = device or DeviceProfile(settings.device_type or detect_device_type(), detect_tflite_version())
        smoke = smoke or (lambda path: run_smoke_test(path, settings.smoke_frames, settings.smoke_timeout_s))
        self.installer = Installer(self.slots, self.device, smoke, settings.archive)
        self._health = health or (lambda: read_health(settings.health_url))
        self.watchdog = watchdog
        self.watchdog_kind = watchdog_kind  # reported in updater.json, hence in the heartbeat
        self._monotonic = monotonic
        self._last_probe: float | None = None
        self._failures = 0
        self.client_loaded = False  # a download round imported the TUF client (it stays until the process ends)
        self.record = UpdateRecord()

    # -- start and loop ----------------------------------------------------------------------
    def recover(self) -> UpdateRecord:
        """Load the journal and repair what an interruption left: temp links, staging, a damaged staged slot."""
        self.slots.ensure(self.settings.factory_bundle)
        try:
            self.record = self.journal.load()
        except StateError as exc:
            log.error("%s: starting over from IDLE (the slots are left as they are)", exc)
            self.record = UpdateRecord(reason="state_unreadable")
        record = self.record
        if record.state is State.STAGED and not self._slot_sound(record.slot):
            self.journal.transition(record, State.IDLE, "staged_slot_damaged")
        if record.state in RESTING or record.live_version is None:
            record.live_version = self._live_version()
        if self.watchdog_kind is not None:
            record.watchdog = self.watchdog_kind
        self.journal.save(record)
        return record

    def run(self, stop: threading.Event, on_round_over: Callable[[], None] | None = None) -> None:
        """Recover, then step until `stop` is set; a failing step (disk full, broken slot) is logged and retried.

        `on_round_over` is called after a step that ended a download round which loaded the TUF client (see
        `round_over`), before the wait; the CLI re-executes the process there, which gives the client's memory
        back, and the journal resumes the update where it stands."""
        self.recover()
        while not stop.is_set():
            delay = self.tick()
            if on_round_over is not None and self.round_over() and not stop.is_set():
                on_round_over()
            stop.wait(delay)

    def round_over(self) -> bool:
        """True when this process loaded the TUF client and the round that did is over: the state has left
        DOWNLOADING (staged, refused or superseded) and no failed step waits for a retry. A round that failed
        and will be retried (its backoff is this process's, not the journal's) keeps the client until it ends."""
        return self.client_loaded and self.record.state is not State.DOWNLOADING and self._failures == 0

    def tick(self) -> float:
        """`step()`, with a failing step logged and retried after a backoff; how long to wait."""
        try:
            return self.step()
        except (TinyLCMError, OSError) as exc:
            log.error("updater: step in %s failed: %s", self.record.state, exc)
            return self._backoff()

    def step(self) -> float:
        """Do the next piece of work; returns how long to wait before the next step."""
        state = self.record.state
        if self.record.pending == "rollback":
            return self._rollback(self.record.reason or "rollback")
        if state is State.DOWNLOADING:
            return self._download()
        sample = self._probe()
        if state in RESTING:
            return self._idle()
        if state is State.STAGED:
            return self._switch(sample)
        if state is State.SWITCHED:
            return self._await_reload(sample)
        return self._probation(sample)

    # -- handlers ----------------------------------------------------------------------------
    def _idle(self) -> float:
        desired, record = read_desired(self.settings.desired_path), self.record
        target, version = desired.get("target"), desired.get("bundle_version")
        if not target or version == record.live_version or target in record.rejected:
            self._failures = 0
            return self.settings.poll_interval_s
        live = self.slots.live()
        self.journal.transition(
            record, State.DOWNLOADING, "desired", target=target, model=desired.get("model"), version=version,
            slot=self.slots.inactive(), previous_slot=live, previous_version=record.live_version,
            attempts=0 if target != record.target else record.attempts, baseline={}, probation={}, pending=None)
        return 0.0

    def _superseded(self) -> bool:
        desired = read_desired(self.settings.desired_path)
        return bool(desired) and desired.get("target") != self.record.target

    def _download(self) -> float:
        record = self.record
        if self._superseded():
            self.journal.transition(record, State.IDLE, "superseded")
            return 0.0
        try:
            assert record.target is not None and record.slot is not None
            bundle = self.installer.stage(self._repository(), record.target, record.model, record.version,
                                          record.slot)
        except UpdateRejectedError as exc:
            return self._refuse(exc.reason, str(exc), forever=not exc.retry)
        except BundleError as exc:
            return self._refuse("bad_bundle", str(exc), forever=True)
        except (RemoteError, StateError) as exc:
            record.attempts, record.reason = record.attempts + 1, f"download_failed: {exc}"
            self.journal.save(record)
            log.warning("updater: %s (attempt %d)", exc, record.attempts)
            return self._backoff()
        self._failures = 0
        self.journal.transition(record, State.STAGED, "verified", version=bundle.version)
        return 0.0

    def _refuse(self, reason: str, detail: str, forever: bool) -> float:
        """Back to IDLE without touching the live slot; `forever`: never try this target again."""
        record = self.record
        log.error("updater: %s refused: %s", record.target, detail)
        rejected = record.rejecting(reason) if forever else record.rejected
        self.journal.transition(record, State.IDLE, f"{reason}: {detail}"[:500], rejected=rejected,
                                attempts=record.attempts + 1)
        return 0.0 if forever else self._backoff()

    def _switch(self, sample: HealthSample) -> float:
        record = self.record
        if self._superseded():
            self.journal.transition(record, State.IDLE, "superseded")
            return 0.0
        baseline: dict[str, float] = {}
        if sample.reachable and sample.model_version == record.previous_version:
            for key in ("latency_ms_p95", "drift_alarm_rate"):
                value = getattr(sample, key)
                if value is not None:
                    baseline[key] = value
        assert record.slot is not None
        if self.slots.live() != record.slot:
            self.slots.flip(record.slot)
        self.journal.transition(record, State.SWITCHED, "flipped", baseline=baseline, probation={"waited_s": 0.0})
        self._last_probe = self._monotonic()
        return self.settings.probe_interval_s

    def _await_reload(self, sample: HealthSample) -> float:
        record, dt = self.record, self._dt()
        waited = record.probation.get("waited_s", 0.0) + dt
        if sample.healthy and sample.model_version == record.version:
            self.journal.transition(record, State.PROBATION, "reloaded",
                                    probation={"elapsed_s": 0.0, "frames": 0.0, "last_frames": float(sample.frames)})
            return self.settings.probe_interval_s
        if waited >= self.settings.gates.reload_timeout_s:
            return self._rollback(f"reload_timeout: the service did not report {record.version} in {waited:.0f} s")
        record.probation = {**record.probation, "waited_s": waited}
        self.journal.save(record)
        return self.settings.probe_interval_s

    def _probation(self, sample: HealthSample) -> float:
        record = self.record
        assert record.version is not None
        progress = dict(record.probation)
        observe(progress, sample, self._dt(), record.version)
        verdict = judge(progress, sample, self.settings.gates, record.baseline, record.version)
        record.probation = progress
        if verdict.decision == "commit":
            self.journal.transition(record, State.COMMITTED, verdict.reason, live_version=record.version,
                                    attempts=0)
            return self.settings.poll_interval_s
        if verdict.decision == "rollback":
            return self._rollback(verdict.reason)
        self.journal.save(record)
        return self.settings.probe_interval_s

    def _rollback(self, reason: str) -> float:
        """Persist the decision, flip back to the previous slot, then record ROLLED_BACK."""
        record = self.record
        if record.pending != "rollback":
            record.pending, record.reason = "rollback", reason
            self.journal.save(record)
        if record.previous_slot and self.slots.live() != record.previous_slot:
            self.slots.flip(record.previous_slot)
        rejected = record.rejecting(reason.split(":")[0])
        self.journal.transition(record, State.ROLLED_BACK, reason, pending=None, rejected=rejected,
                                live_version=record.previous_version)
        return self.settings.poll_interval_s

    # -- helpers -----------------------------------------------------------------------------
    def _probe(self) -> HealthSample:
        sample = self._health()
        if self.watchdog is not None:
            self.watchdog.observe(sample)
        return sample

    def _dt(self) -> float:
        now = self._monotonic()
        dt = 0.0 if self._last_probe is None else max(0.0, now - self._last_probe)
        self._last_probe = now
        return dt

    def _backoff(self) -> float:
        from device import backoff  # tenacity: only once a step has failed

        self._failures += 1
        return backoff.next_delay(self._failures, self.settings.retry_initial_s, self.settings.retry_max_s)

    def _repository(self) -> BundleRepository:
        """The TUF client for one download round, imported here rather than at the top: python-tuf, securesystemslib
        and cryptography's Rust module are a third of an idle updater's memory, and an idle updater verifies
        nothing. Once loaded they stay for the life of the process (`round_over` tells when to end it)."""
        identity = load_identity(self.settings.identity_path)
        if identity is None:
            raise StateError("the device is not enrolled yet", self.settings.identity_path)
        server = self.settings.server_url or read_json(self.settings.provisioning_path).get("server_url")
        if not server:
            raise StateError("no server URL: not provisioned", self.settings.provisioning_path)
        from device.updater.repository import BundleRepository

        self.client_loaded = True
        return BundleRepository(str(server), identity.secret, self.settings.tuf_dir, self.settings.downloads_dir,
                                self.clock, timeout_s=self.settings.http_timeout_s,
                                attempts=self.settings.download_attempts)

    def _live_version(self) -> str | None:
        live = self.slots.live()
        if live is None:
            return None
        try:
            return load_bundle(self.slots.path(live), verify=False).version
        except BundleError as exc:
            log.error("the live slot %s is not a bundle: %s", live, exc)
            return None

    def _slot_sound(self, slot: str | None) -> bool:
        try:
            return slot is not None and load_bundle(self.slots.path(slot)).version == self.record.version
        except BundleError:
            return False
