"""What a start finds of the last run's seqs: records handed out and never committed are counted, never reused.

Seqs are reserved on disk a block ahead (`meta.reserved`, written before any seq of the block is handed
out) and each one handed out is stored in the `IssuedMark`. At startup the highest seq accounted for on
disk (stored, or recorded as delivered, evicted, rejected or dropped) is compared with them:

- after a process crash (the mark is from this boot) the records lost are exactly the seqs between the
  two; they are counted as `lost_in_crash`;
- after a reboot (power cut) the mark may predate the cut: the seqs up to it are counted as lost, and the
  rest of the reserved block as `seqs_unaccounted` (each was either handed out and lost, or never used).

Either way a `log` record says so, and seqs resume after everything that may have been handed out.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from device.outbox.issued import Mark
from device.outbox.records import PRIORITY, Entry
from device.outbox.store import RecordStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovery:
    """What the last run left: the last seq that may have been handed out (the report's, if there is one)."""

    last_issued: int
    lost: int = 0  # records handed out and never committed, known for certain
    unaccounted: int = 0  # seqs of a reserved block that may or may not have been handed out (after a reboot)
    report: Entry | None = None  # the `log` record that says so


def _gap(top: int, reserved: int, mark: Mark | None) -> tuple[int, int, int]:
    """(lost, unaccounted, last seq that may have been handed out) for the highest accounted seq `top`."""
    if mark is not None and mark.seq > reserved:  # e.g. the database was replaced: the mark is not about it
        log.warning("issued-seq mark %d is beyond the %d seqs reserved; not used", mark.seq, reserved)
        mark = None
    if mark is None or (mark.seq < top and not mark.same_boot):
        return 0, reserved - top, reserved
    if mark.seq < top:  # the last start committed its log record and died before storing the mark
        return 0, 0, top
    if mark.same_boot:
        return mark.seq - top, 0, mark.seq
    return mark.seq - top, reserved - mark.seq, reserved


def inspect(store: RecordStore, mark: Mark | None) -> Recovery:
    """Compare what the disk accounts for with the reservation and the mark (reads only)."""
    top = store.usage()[2] - 1
    reserved = max(int(store.meta("reserved", top)), top)
    lost, unaccounted, last = _gap(top, reserved, mark)
    if not lost and not unaccounted:
        return Recovery(last)
    report = _log_entry(last + 1, top + 1, last, lost, unaccounted)
    log.error("%s", json.loads(report.data)["message"])
    return Recovery(last + 1, lost, unaccounted, report)


def persist(store: RecordStore, recovery: Recovery, reserved: int) -> None:
    """Inside a transaction: the report, the counters, and seqs reserved up to `reserved`."""
    if recovery.report is not None:
        store.insert([recovery.report])
        store.add_counters({"lost_in_crash": recovery.lost, "seqs_unaccounted": recovery.unaccounted})
    store.set_meta("reserved", reserved)


def _log_entry(seq: int, first: int, last: int, lost: int, unaccounted: int) -> Entry:
    message = f"lost in crash: {lost} records (seqs {first}-{first + lost - 1})" if lost else "lost in crash: 0"
    if unaccounted:
        message += (f"; after a reboot {unaccounted} more seqs ({last - unaccounted + 1}-{last}) are unaccounted"
                    " for: each was either handed out and lost, or never used")
    data = {"level": "ERROR", "logger": "tinylcm.outbox", "message": message, "lost_in_crash": lost,
            "seqs_unaccounted": unaccounted, "seq_first": first, "seq_last": last}
    return Entry(seq, "log", datetime.now(UTC).isoformat(), PRIORITY["log"], json.dumps(data, separators=(",", ":")))
