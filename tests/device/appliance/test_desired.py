"""The desired state crosses to the updater through desired.json, written only when it changes."""

import json

from device.appliance.desired import DesiredState

TWO = {"bundle_version": "2.0.0", "model": "digits", "target": "digits/2.0.0/bundle.tar"}


def test_written_once_per_change_with_the_time_it_arrived(tmp_path) -> None:
    path = tmp_path / "state" / "desired.json"
    desired = DesiredState(path)
    desired(TWO)
    written = json.loads(path.read_text())
    assert {k: written[k] for k in TWO} == TWO and "received_at" in written
    path.write_text("{}")
    desired(dict(TWO))  # every heartbeat repeats it: no write, no fsync
    assert path.read_text() == "{}"
    desired({**TWO, "bundle_version": "1.0.0"})
    assert json.loads(path.read_text())["bundle_version"] == "1.0.0"


def test_a_new_process_writes_the_first_desired_state_it_hears(tmp_path) -> None:
    path = tmp_path / "desired.json"
    DesiredState(path)(TWO)
    path.write_text("{}")
    DesiredState(path)(TWO)
    assert json.loads(path.read_text())["target"] == TWO["target"]
