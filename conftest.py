"""Repo-wide fixtures: real PostgreSQL and Redis for the session (see meshplate_testing.servers),
and workload certificates of one CA."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis

from meshplate_core.mtls import Tls
from meshplate_core.pki import ensure
from meshplate_testing.pgbouncer import ThrowawayPgBouncer, running_pgbouncer
from meshplate_testing.proxy import TcpProxy
from meshplate_testing.servers import (
    PG_DEFAULT,
    REDIS_DEFAULT,
    postgres_answers,
    recreate_database,
    redis_answers,
    throwaway_postgres,
    throwaway_redis,
)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A DSN of a PostgreSQL server (its `postgres` database) where tests may create databases."""
    if dsn := os.environ.get("TEST_POSTGRES_DSN"):
        yield dsn
    elif postgres_answers(PG_DEFAULT):
        yield PG_DEFAULT
    else:
        with throwaway_postgres() as dsn:
            yield dsn


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a Redis database that tests own (flush it freely)."""
    if url := os.environ.get("TEST_REDIS_URL"):
        yield url
    elif redis_answers(REDIS_DEFAULT):
        yield REDIS_DEFAULT
    else:
        with throwaway_redis() as url:
            yield url


@pytest.fixture(scope="session")
def pooler(postgres_dsn: str) -> Iterator[ThrowawayPgBouncer | None]:
    """With TEST_PGBOUNCER_POOL=<n> (`make test-scale`), a PgBouncer in transaction pooling mode
    with n server connections per database, through which every service reaches its database;
    else None (straight to PostgreSQL)."""
    if size := os.environ.get("TEST_PGBOUNCER_POOL"):
        with running_pgbouncer(postgres_dsn, pool_size=int(size)) as server:
            yield server
    else:
        yield None


@pytest.fixture(scope="session")
def make_database(postgres_dsn: str, pooler: ThrowawayPgBouncer | None) -> Callable[[str], str]:
    """Creates (dropping any old one) the database `meshplate_test_<name>`; returns its URL
    (through the pooler when there is one).

    Call it from a synchronous fixture: it runs its own event loop.
    """

    def make(name: str) -> str:
        url = asyncio.run(recreate_database(postgres_dsn, f"meshplate_test_{name}"))
        return url if pooler is None else pooler.url(url)

    return make


@pytest.fixture
def flushed_redis(redis_url: str) -> str:
    """`redis_url`, emptied before the test."""
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    return redis_url


@pytest.fixture
async def postgres_proxy(postgres_dsn: str) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the test PostgreSQL server, open at the start."""
    host, _, port = postgres_dsn.split("@", 1)[1].split("/", 1)[0].rpartition(":")
    proxy = TcpProxy(host, int(port))
    await proxy.open()
    yield proxy
    await proxy.cut()


@pytest.fixture(scope="session")
def workload_tls(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Tls]:
    """The TLS folder of a workload (`gateway`, `users`, `envoy`, or any name), all issued by
    one CA for the session (meshplate_core.pki), made on first use."""
    root = tmp_path_factory.mktemp("pki")

    def tls(name: str) -> Tls:
        return Tls(ensure(root, [name])[name])

    return tls
