"""The import worker: takes package jobs from the PostgreSQL queue, unpacks, and imports records."""
