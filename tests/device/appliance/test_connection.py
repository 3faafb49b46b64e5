"""The link to the server: sync at once with a configured server, else provisioning first; sync starts once."""

from types import SimpleNamespace

import pytest

from device.appliance import connection as connection_module
from device.appliance.connection import Connection
from device.config import parse_config
from tests.device.appliance.fakes import FakeOutbox
from tests.utils.wait import wait_until


class FakeSync:
    """Records how it was built and what was asked of it."""

    started: list["FakeSync"] = []

    def __init__(self, outbox, settings, status, on_labels, on_desired) -> None:
        self.settings, self.callbacks = settings, (status, on_labels, on_desired)
        self.calls: list[str] = []

    def start(self) -> "FakeSync":
        FakeSync.started.append(self)
        return self

    def counters(self) -> dict[str, int]:
        return {"sync_conflicts": 0}

    def heartbeat(self, timeout: float) -> None:
        self.calls.append(f"heartbeat {timeout}")

    def close(self) -> None:
        self.calls.append("close")


@pytest.fixture(autouse=True)
def fake_sync(monkeypatch):
    FakeSync.started = []
    monkeypatch.setattr(connection_module, "SyncService", FakeSync)


def _connection(tmp_path, server_url: str = "") -> Connection:
    config = parse_config({"device": {"data_dir": str(tmp_path)}, "sync": {"server_url": server_url}})
    return Connection(config, FakeOutbox(), status=dict, on_labels=print, on_desired=print)


def test_a_configured_server_is_synced_with_at_once_and_only_once(tmp_path) -> None:
    connection = _connection(tmp_path, "http://server.test")
    connection.connect()
    connection._on_enrolled(SimpleNamespace(server_url="http://other.test"))  # a late enrollment changes nothing
    (sync,) = FakeSync.started
    assert sync.settings.server_url == "http://server.test" and sync.callbacks == (dict, print, print)
    assert connection.health() == {"sync": True, "sync_conflicts": 0} and connection.provisioner is None
    connection.close()
    assert sync.calls == ["heartbeat 5", "close"]  # a last heartbeat before stopping


def test_without_a_server_provisioning_runs_and_its_enrollment_starts_sync(tmp_path) -> None:
    connection = _connection(tmp_path)
    connection.connect()
    try:
        assert connection.provisioner is not None and FakeSync.started == []
        # No provisioning file: the first attempt says so, then it retries now and then.
        wait_until(lambda: connection.health().get("provisioning_reason") == "not_provisioned", 10,
                   "the first provisioning attempt", interval=0.05)
        health = connection.health()
        assert (health["sync"], health["provisioning"], health["provisioning_reason"]) == (
            False, "error", "not_provisioned")
        connection._on_enrolled(SimpleNamespace(server_url="http://enrolled.test"))
        assert [s.settings.server_url for s in FakeSync.started] == ["http://enrolled.test"]
        assert connection.config.sync.server_url == ""  # the configuration itself never changes at run time
    finally:
        connection.close()
