"""PostgreSQL access: the ORM models, engine and sessions, and the Alembic migrations."""
