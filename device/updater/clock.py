"""A lower bound on the true time, for a device without a real-time clock.

TUF metadata is checked at `reference_time() = max(system clock, trusted floor)`. The floor only moves
forward, and only to a system time that a freshly verified, unexpired timestamp from the server vouched
for: a clock booting in 1970 cannot make expired metadata valid again (freeze), and a clock booting in
2040 makes metadata look expired - the update waits - but never poisons the floor, so the device is
fine again as soon as its clock is (no brick).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from contract.atomic import write_json_atomic

log = logging.getLogger(__name__)

# Nothing this software verifies can be older than its release: the floor of a device that never synced.
RELEASE_FLOOR = datetime(2026, 1, 1, tzinfo=UTC)


class TrustedClock:
    """The system clock, never earlier than the persisted floor (`state/trusted_time.json`)."""

    def __init__(self, path: Path, now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 release_floor: datetime = RELEASE_FLOOR) -> None:
        self.path = path
        self._now = now
        self.release_floor = release_floor

    def floor(self) -> datetime:
        """The newest time known to have passed."""
        try:
            stored = datetime.fromisoformat(json.loads(self.path.read_text())["not_before"])
        except FileNotFoundError:
            return self.release_floor
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("trusted time %s unreadable (%s): using the release floor", self.path, exc)
            return self.release_floor
        return max(stored, self.release_floor)

    def reference_time(self) -> datetime:
        """The time metadata expiry is judged at."""
        now, floor = self._now(), self.floor()
        if now < floor:
            log.warning("system clock %s is before the trusted floor %s: judging expiry at the floor",
                        now.isoformat(timespec="seconds"), floor.isoformat(timespec="seconds"))
        return max(now, floor)

    def vouch(self, reference: datetime) -> None:
        """Raise the floor to `reference` (a time at which fresh server metadata verified as unexpired)."""
        if reference > self.floor():
            write_json_atomic(self.path, {"not_before": reference.isoformat(), "source": "tuf timestamp"})

    def skew_s(self) -> float:
        """How far the system clock is behind the floor (> 0: the clock is known to be wrong)."""
        return max(0.0, (self.floor() - self._now()).total_seconds())
