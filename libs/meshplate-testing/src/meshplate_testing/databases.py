"""A fresh database with a service's migrations applied, for a test session."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from meshplate_core.database import migrate, open_engine


async def _migrate(url: str, migrations: Path) -> None:
    engine = open_engine(url, pool_size=1, application_name="tests")
    try:
        await migrate(engine, migrations)
    finally:
        await engine.dispose()


def migrated_database(make_database: Callable[[str], str], name: str, migrations: Path) -> str:
    """Create `meshplate_test_<name>` afresh and migrate it; its URL. Call it from a synchronous
    (session) fixture: it runs its own event loop."""
    url = make_database(name)
    asyncio.run(_migrate(url, migrations))
    return url
