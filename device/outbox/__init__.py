"""The local buffer: every record the appliance produces, in SQLite (WAL), until the server has it.

Each record has a per-device, never-reused sequence number (`seq`), a kind, a priority and a JSON
payload; images are blobs written atomically beside the database and referenced by name.
"""

from device.outbox.backlog import Backlog
from device.outbox.outbox import Outbox, OutboxObserver, OutboxSettings, outbox_settings_from
from device.outbox.records import KINDS, PRIORITY, Record

__all__ = [
    "KINDS", "PRIORITY", "Backlog", "Outbox", "OutboxObserver", "OutboxSettings", "Record", "outbox_settings_from",
]
