"""Migration 0005: packages keyed by (device_id, id); existing rows keep their ids and links, both ways."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from server.db.migrate import alembic_config, upgrade

SHA = "0" * 64


def _package(connection: Connection, device_id: str, package_id: str) -> None:
    connection.execute(text("INSERT INTO packages (id, device_id, sha256, size, object_key) "
                            "VALUES (:p, :d, :sha, 1, 'k')"), {"p": package_id, "d": device_id, "sha": SHA})


def _downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_existing_packages_keep_their_ids_and_links(scratch_engine: Engine) -> None:
    upgrade(scratch_engine, "0004")
    with scratch_engine.begin() as connection:
        connection.execute(text("INSERT INTO devices (id) VALUES ('dev-a'), ('dev-b')"))
        _package(connection, "dev-a", "pkg-1")
        connection.execute(text("INSERT INTO jobs (kind, package_id) VALUES ('import_package', 'pkg-1')"))
        connection.execute(text("INSERT INTO records (device_id, seq, package_id, kind, data) "
                                "VALUES ('dev-a', 1, 'pkg-1', 'log', '{}')"))
    upgrade(scratch_engine)
    with scratch_engine.begin() as connection:
        assert connection.execute(text("SELECT device_id, package_id FROM jobs")).all() == [("dev-a", "pkg-1")]
        _package(connection, "dev-b", "pkg-1")  # another device's package under the same id: no collision
        ids = connection.execute(text("SELECT device_id, id FROM packages ORDER BY device_id")).all()
        assert ids == [("dev-a", "pkg-1"), ("dev-b", "pkg-1")]
        _package(connection, "dev-a", "pkg-2")
    with pytest.raises(IntegrityError), scratch_engine.begin() as connection:  # a record is in its device's package
        connection.execute(text("INSERT INTO records (device_id, seq, package_id, kind, data) "
                                "VALUES ('dev-b', 1, 'pkg-2', 'log', '{}')"))
    with pytest.raises(RuntimeError, match="pkg-1"):  # a fleet-wide key cannot hold both
        _downgrade(scratch_engine, "0004")
    with scratch_engine.begin() as connection:
        connection.execute(text("DELETE FROM packages WHERE device_id = 'dev-b' OR id = 'pkg-2'"))
    _downgrade(scratch_engine, "0004")
    with scratch_engine.connect() as connection:
        assert connection.execute(text("SELECT id, device_id FROM packages")).all() == [("pkg-1", "dev-a")]
        assert connection.execute(text("SELECT package_id FROM records")).scalars().all() == ["pkg-1"]
    upgrade(scratch_engine)
