"""Alembic migrations: the packaged revisions build the schema the models describe, repeatably."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from server.cli import main
from server.db.migrate import alembic_config, upgrade
from server.db.models import Base


def test_upgrade_matches_models_and_is_repeatable(scratch_engine: Engine) -> None:
    upgrade(scratch_engine)
    upgrade(scratch_engine)  # a second replica starting later finds nothing to do
    with scratch_engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_downgrade_to_base_and_back(scratch_engine: Engine) -> None:
    upgrade(scratch_engine)
    config = alembic_config()
    with scratch_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(scratch_engine).get_table_names()) <= {"alembic_version"}
    upgrade(scratch_engine)
    assert "devices" in inspect(scratch_engine).get_table_names()


def test_upgrade_from_0001_adds_frame_seq(scratch_engine: Engine) -> None:
    upgrade(scratch_engine, "0001")
    assert "frame_seq" not in {c["name"] for c in inspect(scratch_engine).get_columns("drift_events")}
    with scratch_engine.begin() as connection:
        connection.execute(text("INSERT INTO devices (id) VALUES ('dev-1')"))
        connection.execute(text("INSERT INTO packages (id, device_id, sha256, size, object_key) "
                                "VALUES ('pkg-1', 'dev-1', :sha, 1, 'k')"), {"sha": "0" * 64})
        connection.execute(text("INSERT INTO drift_events (device_id, seq, package_id, detector) "
                                "VALUES ('dev-1', 3, 'pkg-1', 'knn')"))
    upgrade(scratch_engine)
    with scratch_engine.connect() as connection:
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head
        assert connection.execute(text("SELECT seq, frame_seq FROM drift_events")).all() == [(3, None)]
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_cli_migrate(scratch_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINYSPHERE_DATABASE_URL", scratch_engine.url.render_as_string(hide_password=False))
    assert main(["migrate"]) == 0
    assert "jobs" in inspect(scratch_engine).get_table_names()


def test_replicas_starting_together_migrate_once(scratch_engine: Engine) -> None:
    import threading

    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(scratch_engine)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert "devices" in inspect(scratch_engine).get_table_names()
