"""The journal: allowed edges only, history and events bounded, atomic and reloadable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device.errors import StateError
from device.updater.record import Journal, State, UpdateRecord, report


def test_transitions_are_saved_with_history(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "updater.json", history_limit=3)
    record = journal.load()
    assert record.state is State.IDLE
    journal.transition(record, State.DOWNLOADING, "desired", target="m/2/bundle.tar", version="2")
    journal.transition(record, State.STAGED, "verified")
    journal.transition(record, State.SWITCHED, "flipped")
    journal.transition(record, State.PROBATION, "reloaded")
    loaded = journal.load()
    assert loaded.state is State.PROBATION and loaded.version == "2"
    assert [h["to"] for h in loaded.history] == ["STAGED", "SWITCHED", "PROBATION"]
    assert [e["seq"] for e in report(loaded)["events"]] == [2, 3, 4]
    assert not list(tmp_path.glob(".*.tmp"))


def test_illegal_edge_is_refused(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "updater.json")
    with pytest.raises(StateError, match="IDLE -> SWITCHED"):
        journal.transition(UpdateRecord(), State.SWITCHED, "?")


def test_unreadable_journal(tmp_path: Path) -> None:
    path = tmp_path / "updater.json"
    path.write_text("{")
    with pytest.raises(StateError):
        Journal(path).load()
    path.write_text(json.dumps({"state": "FLYING"}))
    with pytest.raises(StateError):
        Journal(path).load()
