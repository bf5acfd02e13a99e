"""open_engine through a real PgBouncer in transaction pooling mode: many client connections,
one server connection, transactions and single statements interleaved (`make test-scale`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from meshplate_core.database import open_engine
from meshplate_testing.pgbouncer import ThrowawayPgBouncer, running_pgbouncer

CLIENTS = 8


@pytest.fixture(scope="module")
def one_server_connection(postgres_dsn: str) -> Iterator[ThrowawayPgBouncer]:
    if not os.environ.get("TEST_PGBOUNCER_POOL"):
        pytest.skip("runs with PgBouncer: make test-scale")
    with running_pgbouncer(postgres_dsn, pool_size=1) as server:
        yield server


@pytest.fixture
def database(make_database: Callable[[str], str]) -> str:
    return make_database("pgbouncer")


async def _busy(engine: AsyncEngine) -> None:
    """Each client: the same statements again and again, inside transactions and alone."""

    async def client(n: int) -> None:
        for round_ in range(5):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n * 100 + round_})
                await conn.execute(text("SELECT count(*) FROM t WHERE n >= :n"), {"n": n})
            async with engine.connect() as conn:
                await conn.execute(text("SELECT n FROM t WHERE n = :n"), {"n": n})

    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS t (n int)"))
    await asyncio.gather(*(client(n) for n in range(CLIENTS)))


async def test_marked_urls_work_with_one_server_connection_for_many_clients(
    one_server_connection: ThrowawayPgBouncer, database: str
) -> None:
    engine = open_engine(
        one_server_connection.url(database), pool_size=CLIENTS, application_name="t"
    )
    try:
        await _busy(engine)
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one()
    finally:
        await engine.dispose()

    assert rows == CLIENTS * 5


async def test_without_the_mark_cached_statements_are_lost_between_transactions(
    one_server_connection: ThrowawayPgBouncer, database: str
) -> None:
    # What the mark is for: the same engine without it caches prepared statements, which the
    # next transaction looks for on a server connection that does not hold them.
    url = one_server_connection.url(database).removesuffix("?pgbouncer=true")
    engine = open_engine(url, pool_size=CLIENTS, application_name="t")
    try:
        with pytest.raises(DBAPIError) as failed:
            await _busy(engine)
    finally:
        await engine.dispose()

    assert "prepared statement" in str(failed.value)
