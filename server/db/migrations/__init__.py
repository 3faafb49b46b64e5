"""Alembic migration environment of the server database."""
