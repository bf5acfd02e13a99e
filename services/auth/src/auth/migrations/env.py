"""Alembic environment of the auth service (run through meshplate_core.database.migrate)."""

from auth.storage.tables import metadata
from meshplate_core.database import run_migrations

run_migrations(metadata)
