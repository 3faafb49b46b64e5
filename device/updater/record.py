"""The updater's state machine and its journal `state/updater.json`, rewritten atomically after every step.

IDLE -> DOWNLOADING -> STAGED -> SWITCHED -> PROBATION -> COMMITTED | ROLLED_BACK; a failed download or a
rejected bundle goes back to IDLE; COMMITTED and ROLLED_BACK are idle too, until the next desired version.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from contract.atomic import write_json_atomic
from device.errors import StateError
from device.layout import DataLayout

log = logging.getLogger(__name__)


class State(StrEnum):
    IDLE = "IDLE"
    DOWNLOADING = "DOWNLOADING"
    STAGED = "STAGED"
    SWITCHED = "SWITCHED"
    PROBATION = "PROBATION"
    COMMITTED = "COMMITTED"
    ROLLED_BACK = "ROLLED_BACK"


RESTING = frozenset({State.IDLE, State.COMMITTED, State.ROLLED_BACK})  # no update in progress
TRANSITIONS: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.DOWNLOADING}),
    State.DOWNLOADING: frozenset({State.STAGED, State.IDLE}),
    State.STAGED: frozenset({State.SWITCHED, State.IDLE}),
    State.SWITCHED: frozenset({State.PROBATION, State.ROLLED_BACK}),
    State.PROBATION: frozenset({State.COMMITTED, State.ROLLED_BACK}),
    State.COMMITTED: frozenset({State.DOWNLOADING}),
    State.ROLLED_BACK: frozenset({State.DOWNLOADING}),
}


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class UpdateRecord:
    """The persisted state of the updater; every field survives a power loss between two steps."""

    state: State = State.IDLE
    target: str | None = None  # TUF target path <model>/<version>/bundle.tar of the update in progress
    model: str | None = None
    version: str | None = None  # version being installed (or the last one handled)
    slot: str | None = None  # slot the new version goes into
    previous_slot: str | None = None  # slot live before the switch: where a rollback goes back to
    previous_version: str | None = None
    live_version: str | None = None  # the last known-good version (committed, or found live): desired is compared to it
    reason: str | None = None  # why the last transition happened
    attempts: int = 0  # failed rounds for this target
    pending: str | None = None  # a rollback decided but not yet finished ("rollback")
    baseline: dict[str, float] = field(default_factory=dict)  # previous model's latency_ms_p95, drift_alarm_rate
    probation: dict[str, float] = field(default_factory=dict)  # elapsed_s, unhealthy_s, frames, restarts, ...
    rejected: dict[str, str] = field(default_factory=dict)  # target -> reason, never retried while desired
    history: list[dict[str, Any]] = field(default_factory=list)  # transitions, oldest first, bounded
    events: list[dict[str, Any]] = field(default_factory=list)  # the same, numbered, for the heartbeat
    event_seq: int = 0
    watchdog: str | None = None  # how a hung inference service is restarted: balena, docker, process, none
    updated_at: str = field(default_factory=utc_now)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UpdateRecord:
        known = {f.name for f in fields(cls)}
        record = cls(**{k: v for k, v in data.items() if k in known})
        record.state = State(record.state)
        return record

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def rejecting(self, reason: str, keep: int = 20) -> dict[str, str]:
        """`rejected` with the current target added (the oldest entries beyond `keep` dropped)."""
        rejected = {k: v for k, v in self.rejected.items() if k != self.target}
        rejected[self.target or ""] = reason
        return dict(list(rejected.items())[-keep:])


class Journal:
    """Loads and saves the `UpdateRecord`; `transition()` checks the edge, records it and saves."""

    def __init__(self, path: Path, history_limit: int = 50, now: Callable[[], str] = utc_now) -> None:
        self.path = path
        self.history_limit = history_limit
        self._now = now

    def load(self) -> UpdateRecord:
        """The saved record, a fresh IDLE one when there is none; a corrupt file is a `StateError`."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return UpdateRecord()
        except (OSError, ValueError) as exc:
            raise StateError(f"unreadable updater state: {exc}", self.path) from exc
        try:
            return UpdateRecord.from_json(data)
        except (TypeError, ValueError) as exc:
            raise StateError(f"updater state of an unknown shape: {exc}", self.path) from exc

    def save(self, record: UpdateRecord) -> None:
        record.updated_at = self._now()
        write_json_atomic(self.path, record.to_json())

    def transition(self, record: UpdateRecord, to: State, reason: str, **changes: Any) -> UpdateRecord:
        """Move `record` to `to` (an allowed edge), apply `changes`, note it in history and events, save."""
        if to not in TRANSITIONS[record.state]:
            raise StateError(f"updater: no transition {record.state} -> {to}", self.path)
        for key, value in changes.items():
            setattr(record, key, value)
        entry = {"from": str(record.state), "to": str(to), "at": self._now(), "reason": reason,
                 "version": record.version, "target": record.target}
        record.state, record.reason = to, reason
        record.event_seq += 1
        record.history = [*record.history, entry][-self.history_limit:]
        record.events = [*record.events, {"seq": record.event_seq, **entry}][-self.history_limit:]
        self.save(record)
        log.info("updater: %s -> %s (%s) %s", entry["from"], to, reason, record.version or "")
        return record


def report(record: UpdateRecord, events: int = 20) -> dict[str, Any]:
    """What the heartbeat carries about updates: the state, the versions and the latest transitions."""
    return {"state": str(record.state), "target": record.target, "version": record.version,
            "live_version": record.live_version, "reason": record.reason, "attempts": record.attempts,
            "watchdog": record.watchdog, "events": record.events[-events:] if events else []}


def update_report(data_dir: str | Path, events: int = 20) -> dict[str, Any]:
    """The updater's state for the heartbeat, read from `state/updater.json` ({"state": "unknown"} if unreadable)."""
    try:
        record = Journal(DataLayout(data_dir).updater_journal).load()
    except StateError:
        return {"state": "unknown"}
    return report(record, events)
