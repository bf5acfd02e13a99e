"""Alembic environment of the users service (run through meshplate_core.database.migrate)."""

from meshplate_core.database import run_migrations
from users.storage.tables import metadata

run_migrations(metadata)
