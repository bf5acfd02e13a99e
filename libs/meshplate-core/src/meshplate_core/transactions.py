"""Database: a service's engine as its use cases hold it, opened one transaction at a time.

The use cases decide where a transaction begins and ends; the connection they get is only handed
on to their service's stores (its `storage/` package), so nothing else touches the driver.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TypeAlias

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from meshplate_core.database import PGBOUNCER

# What the composition root receives from meshplate_core.runner, and what the stores run on.
Engine: TypeAlias = AsyncEngine
Connection: TypeAlias = AsyncConnection


class Database:
    """Transactions and connections on a service's engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        # Through PgBouncer every statement runs inside a transaction (meshplate_core.database).
        self._pgbouncer = bool(engine.get_execution_options().get(PGBOUNCER))

    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        return self._engine.begin()

    def connection(self) -> AbstractAsyncContextManager[Connection]:
        """A connection whose statements share one transaction, rolled back when the block ends."""
        return self._engine.connect()

    def autocommit(self) -> AbstractAsyncContextManager[Connection]:
        """A connection on which every statement is its own transaction (no BEGIN around it);
        through PgBouncer, the block is one transaction instead (committed at its end)."""
        if self._pgbouncer:
            return self._engine.begin()
        return self._autocommit.connect()
