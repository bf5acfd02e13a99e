"""Database bootstrap for the services that own tables: engine, ping and Alembic migrations.

One code path serves PostgreSQL (asyncpg) in production and tests and SQLite (aiosqlite) files for a
zero-setup local stack. URLs may be given in their plain form (`postgresql://`, `sqlite:///`): the
async driver is chosen here, so operators never need to know which one we use.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# The engine's execution option saying that it reaches PostgreSQL through PgBouncer.
PGBOUNCER = "meshplate_pgbouncer"
_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}
# SQLite names the columns, not the constraint: "UNIQUE constraint failed: user.email".
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (\w+)\.(\w+)")
# Any constant works; it only has to be the same for every replica of one service.
_MIGRATION_LOCK_ID = 0x6D657368

log = logging.getLogger(__name__)


def async_url(url: str) -> URL:
    """Parse a database URL and pick the async driver for its dialect."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.get_backend_name())
    if driver is None:
        raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")
    return parsed.set(drivername=driver)


def open_engine(url: str, *, pool_size: int, application_name: str) -> AsyncEngine:
    """Create the service's engine; SQLite files get their folder, WAL and enforced foreign keys.

    A PostgreSQL URL with `?pgbouncer=true` (Prisma's convention) points at PgBouncer in
    transaction pooling mode, where consecutive transactions of one connection may run on
    different server connections: asyncpg and SQLAlchemy then cache no prepared statement, and
    each one gets a name of its own, so no statement is looked for (or named twice) on a server
    connection that does not hold it. SQLAlchemy prepares a statement before it runs it, two
    exchanges that PgBouncer could send to two server connections unless a transaction holds
    one: such an engine runs nothing outside a transaction (`Database.autocommit` is one).
    """
    parsed = async_url(url)
    pgbouncer = parsed.query.get("pgbouncer") == "true"
    parsed = parsed.difference_update_query(["pgbouncer"])
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, connect_args={"timeout": 10})
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        return engine
    connect_args: dict[str, Any] = {"server_settings": {"application_name": application_name}}
    if pgbouncer:
        connect_args |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _statement_name,
        }
    return create_async_engine(
        parsed,
        pool_size=pool_size,
        pool_pre_ping=True,
        connect_args=connect_args,
        # Read by meshplate_core.transactions: no statement outside a transaction.
        execution_options={PGBOUNCER: pgbouncer},
    )


def _statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


async def ping(engine: AsyncEngine, *, timeout_s: float) -> None:
    """Raise unless the database answers a trivial query within the timeout."""
    async with asyncio.timeout(timeout_s), engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def wait_until_up(engine: AsyncEngine, *, within_s: float, retry_s: float = 1.0) -> None:
    """Return once the database answers; re-raise its last error when it has not within
    `within_s`. A migration job started beside its database (compose, a fresh cluster) waits for
    it instead of failing: refused, unresolved, starting up and timed-out connections are
    retried, everything else is raised at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    told = False
    while True:
        try:
            await ping(engine, timeout_s=max(min(5.0, deadline - loop.time()), 0.1))
            return
        except (OSError, TimeoutError, DBAPIError) as error:
            if isinstance(error, DBAPIError) and not _starting(error):
                raise  # a wrong password or database: waiting would not help
            if loop.time() + retry_s > deadline:
                raise
            if not told:
                log.warning(
                    "database not answering yet (%s); waiting up to %.0f s",
                    error,
                    within_s,
                )
                told = True
            await asyncio.sleep(retry_s)


def _starting(error: DBAPIError) -> bool:
    # asyncpg's CannotConnectNowError: "the database system is starting up" (SQLSTATE 57P03).
    return getattr(error.orig, "sqlstate", None) == "57P03"


async def migrate(engine: AsyncEngine, script_location: Path) -> None:
    """Upgrade the schema to the newest revision; concurrent replicas take turns on PostgreSQL."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
            )
        await conn.run_sync(_upgrade, script_location)


def _upgrade(connection: Connection, script_location: Path) -> None:
    # Imported here: a process that does not migrate (a Deployment's, whose migrations run as a
    # Job) never loads Alembic, about 12 MiB of its memory.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def run_migrations(target_metadata: Any) -> None:
    """The whole body of a service's Alembic `env.py`: migrate on the connection `migrate` passed."""
    from alembic import context

    connection: Connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def violated_unique(exc: IntegrityError) -> str | None:
    """The violated unique constraint (`uq_<table>_<first column>`), if that was the cause."""
    cause = exc.orig.__cause__ if exc.orig is not None else None
    constraint = getattr(cause, "constraint_name", None)  # asyncpg
    if isinstance(constraint, str):
        return constraint
    match = _SQLITE_UNIQUE.search(str(exc.orig))
    return f"uq_{match[1]}_{match[2]}" if match else None
