"""Alembic environment: always run online, on the connection handed in by `server.db.migrate`."""

from __future__ import annotations

from alembic import context

from server.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `tinysphere migrate`, which supplies the connection")
context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
