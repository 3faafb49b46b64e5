"""The updater seen from the appliance: its report through `update_report`, its transitions relayed once."""

import json

from device.appliance.updates import UpdaterRelay
from device.layout import DataLayout
from device.updater.record import Journal, State, UpdateRecord
from tests.device.appliance.fakes import FakeOutbox


def _journal(tmp_path) -> tuple[Journal, UpdateRecord]:
    return Journal(DataLayout(tmp_path).updater_journal), UpdateRecord()


def test_report_is_the_updaters_own(tmp_path) -> None:
    relay = UpdaterRelay(DataLayout(tmp_path), FakeOutbox())
    assert relay.report() == {}  # no journal yet: no update state, the server keeps the one it has
    layout = DataLayout(tmp_path)
    layout.state.mkdir()
    layout.updater_journal.write_text(json.dumps({"state": "PROBATION", "watchdog": "none"}))
    assert (relay.report()["state"], relay.report()["watchdog"]) == ("PROBATION", "none")
    layout.updater_journal.write_text("{torn")
    assert relay.report() == {"state": "unknown"}
    relay.ship()  # an unreadable journal ships nothing


def test_transitions_are_shipped_once_as_logs_and_a_rollback_is_a_warning(tmp_path) -> None:
    journal, record = _journal(tmp_path)
    outbox = FakeOutbox()
    relay = UpdaterRelay(DataLayout(tmp_path), outbox)
    journal.transition(record, State.DOWNLOADING, "desired", version="2.0.0")
    journal.transition(record, State.STAGED, "verified")
    journal.transition(record, State.SWITCHED, "flipped")
    relay.ship()
    journal.transition(record, State.ROLLED_BACK, "unhealthy")
    relay.ship()
    relay.ship()
    logs = outbox.of("log")
    assert [(log["level"], log["message"]) for log in logs] == [
        ("INFO", "updater: IDLE -> DOWNLOADING (desired) 2.0.0"),
        ("INFO", "updater: DOWNLOADING -> STAGED (verified) 2.0.0"),
        ("INFO", "updater: STAGED -> SWITCHED (flipped) 2.0.0"),
        ("WARNING", "updater: SWITCHED -> ROLLED_BACK (unhealthy) 2.0.0")]
    assert {log["logger"] for log in logs} == {"tinylcm.updater"} and logs[3]["transition"]["seq"] == 4
    assert json.loads(DataLayout(tmp_path).updater_reported.read_text()) == {"event_seq": 4}


def test_every_transition_the_journal_keeps_is_shipped_not_only_the_heartbeats_latest(tmp_path) -> None:
    journal, record = _journal(tmp_path)
    for _ in range(15):
        journal.transition(record, State.DOWNLOADING, "desired")
        journal.transition(record, State.IDLE, "download_failed")
    outbox = FakeOutbox()
    UpdaterRelay(DataLayout(tmp_path), outbox).ship()
    assert [log["transition"]["seq"] for log in outbox.of("log")] == list(range(1, 31))


def test_nothing_is_marked_shipped_until_the_outbox_committed_it(tmp_path) -> None:
    journal, record = _journal(tmp_path)
    journal.transition(record, State.DOWNLOADING, "desired")
    outbox = FakeOutbox(flushes=False)
    relay = UpdaterRelay(DataLayout(tmp_path), outbox)
    relay.ship()
    outbox.flushes = True
    relay.ship()
    relay.ship()
    assert [log["transition"]["seq"] for log in outbox.of("log")] == [1, 1]  # repeated, never lost
