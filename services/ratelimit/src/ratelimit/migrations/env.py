"""Alembic environment of the ratelimit service (run through meshplate_core.database.migrate)."""

from meshplate_core.database import run_migrations
from ratelimit.storage.tables import metadata

run_migrations(metadata)
