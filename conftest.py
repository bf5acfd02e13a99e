"""Repo-wide fixtures: real PostgreSQL and Redis for the session (see meshplate_testing.servers),
and workload certificates of one CA."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from meshplate_core.mtls import Tls
from meshplate_core.pki import ensure
from meshplate_testing.pgbouncer import ThrowawayPgBouncer, running_pgbouncer
from meshplate_testing.proxy import TcpProxy
from meshplate_testing.redis_cluster import ThrowawayRedisCluster, running_redis_cluster
from meshplate_testing.servers import (
    PG_DEFAULT,
    REDIS_DEFAULT,
    flush_redis,
    postgres_answers,
    recreate_database,
    redis_answers,
    throwaway_postgres,
    throwaway_redis,
)


def pytest_configure(config: pytest.Config) -> None:
    # An asyncio stream still open when its event loop closed, collected in a later test: seen
    # once in the one-server run too, right after the worker's tests (whose FastStream reads are
    # cancelled at stop, the redis-py leak below; or the test SMTP server's session). Our own
    # code opens no asyncio stream outside the test helpers, which close theirs.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:Exception ignored in. <function StreamWriter.__del__"
        ":pytest.PytestUnraisableExceptionWarning",
    )
    if os.environ.get("TEST_REDIS_CLUSTER"):
        # redis-py 8.1's cluster client leaks the connection of a command cancelled mid-call (as
        # FastStream cancels its stream reads when a worker stops), and a node a topology
        # refresh replaced keeps its busy connections open: the client, the cluster node, the
        # connection, its stream writer (filtered above for every run), its transport or its
        # socket, whichever the collector meets first. These are every `__del__` warning of
        # redis-py's asyncio cluster classes and of the asyncio objects under them. A leak at
        # shutdown only (not yet traced to its owner when it is the client); the one-server run
        # (`make test`) keeps every other form an error.
        leaks = (
            "<function RedisCluster.__del__",
            "<function ClusterNode.__del__",
            "<function AbstractConnection.__del__",
            "<function _SelectorTransport.__del__",
            "<socket.socket",
        )
        for leaked in leaks:
            config.addinivalue_line(
                "filterwarnings",
                f"ignore:Exception ignored in. {leaked}:pytest.PytestUnraisableExceptionWarning",
            )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On a Redis Cluster (TEST_REDIS_CLUSTER), skip the tests about one Redis server itself."""
    if not os.environ.get("TEST_REDIS_CLUSTER"):
        return
    skip = pytest.mark.skip(reason="about one Redis server itself: not run on a Redis Cluster")
    for item in items:
        if "one_redis_server" in item.keywords:
            item.add_marker(skip)


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
def redis_cluster() -> Iterator[ThrowawayRedisCluster | None]:
    """With TEST_REDIS_CLUSTER=1 (`make test-scale`), a Redis Cluster of three masters and their
    replicas that every service uses instead of one Redis server; else None."""
    if os.environ.get("TEST_REDIS_CLUSTER"):
        with running_redis_cluster() as cluster:
            yield cluster
    else:
        yield None


@pytest.fixture(scope="session")
def redis_url(redis_cluster: ThrowawayRedisCluster | None) -> Iterator[str]:
    """The URL of a Redis database (or cluster) that tests own (flush it freely)."""
    if redis_cluster is not None:
        yield redis_cluster.url
    elif url := os.environ.get("TEST_REDIS_URL"):
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
    flush_redis(redis_url)
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
