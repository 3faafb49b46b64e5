"""The updater (another process) seen from the appliance: its report for the heartbeat, its transitions as logs."""

from __future__ import annotations

import sys
from typing import Any

from contract.atomic import read_json, write_json_atomic
from device.layout import DataLayout
from device.outbox import Outbox
from device.updater.record import update_report


class UpdaterRelay:
    """Reads the updater's journal through `update_report`, the one reader, and relays its transitions."""

    def __init__(self, layout: DataLayout, outbox: Outbox) -> None:
        self.layout = layout
        self.outbox = outbox

    def report(self) -> dict[str, Any]:
        """The updater's report ({"state": ..., "watchdog": ..., "events": [...]}) with every transition kept.

        Empty while the updater has never run (no journal): the heartbeat then sends no update state, and the
        server keeps the one it has."""
        if not self.layout.updater_journal.exists():
            return {}
        return update_report(self.layout.root, events=sys.maxsize)

    def ship(self) -> None:
        """Ship the updater's new transitions to the server as log records.

        A marker file remembers the last one shipped, written only once the records are committed: a
        crash in between repeats a transition line, never loses one."""
        marker = self.layout.updater_reported
        events = self.report().get("events") or []
        shipped = int(read_json(marker).get("event_seq", 0))
        new = [e for e in events if isinstance(e, dict) and isinstance(e.get("seq"), int) and e["seq"] > shipped]
        if not new:
            return
        for event in new:
            level = "WARNING" if event.get("to") == "ROLLED_BACK" else "INFO"
            message = (f"updater: {event.get('from')} -> {event.get('to')} ({event.get('reason')}) "
                       f"{event.get('version') or ''}").rstrip()
            self.outbox.append("log", {"level": level, "logger": "tinylcm.updater", "message": message,
                                       "transition": event})
        if self.outbox.flush(10):
            write_json_atomic(marker, {"event_seq": max(e["seq"] for e in new)})
