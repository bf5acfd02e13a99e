"""Real PostgreSQL and Redis for tests: configured, already running, or started from local binaries.

Each is found in this order: `TEST_POSTGRES_DSN` / `TEST_REDIS_URL`; the server on its default local
port (Redis: database 15, so a developer's data in database 0 is never flushed); a throwaway server
started from the local binaries (`initdb`/`pg_ctl`, `redis-server`); else the session stops with a
one-line hint of what to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from meshplate_core.redis_client import connect

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_DEFAULT = "redis://127.0.0.1:6379/15"


_handed_out: set[int] = set()


def free_port() -> int:
    """A port that was free a moment ago on the loopback interface, and never handed out before
    in this process (the kernel may offer one port twice in a row when nothing holds it)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_until(ready: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Poll `ready` until it is true; stop the session when it never becomes so."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            pytest.exit(f"{what} did not start within {timeout_s:.0f} s", returncode=3)
        time.sleep(0.1)


def with_database(dsn: str, database: str) -> str:
    """The same server and user, another database."""
    head, _, _ = dsn.rpartition("/")
    return f"{head}/{database}"


def postgres_answers(dsn: str) -> bool:
    """Whether a PostgreSQL server accepts a connection at `dsn` within 2 s."""

    async def probe() -> None:
        conn = await asyncpg.connect(dsn, timeout=2)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    return True


def _postgres_binary(name: str) -> str | None:
    installed = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return shutil.which(name) or (installed[0] if installed else None)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.exit(f"{command[-1]} failed: {done.stderr.strip()[-300:]}", returncode=3)


class ThrowawayPostgres:
    """A PostgreSQL server of its own in a temporary folder on a free port, which a test may
    restart (a fault to survive)."""

    def __init__(self) -> None:
        initdb, pg_ctl = _postgres_binary("initdb"), _postgres_binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            pytest.exit(
                "no PostgreSQL: install the Debian package 'postgresql' or set TEST_POSTGRES_DSN",
                returncode=3,
            )
        self._initdb, self._pg_ctl = initdb, pg_ctl
        # PostgreSQL refuses to run as root; root runs it as the 'postgres' system user.
        self._as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        # A folder of its own under /tmp: that user could not enter pytest's private ones.
        self.folder = Path(tempfile.mkdtemp(prefix="meshplate-postgres-"))
        if self._as_user:
            shutil.chown(self.folder, user="postgres")
        self._data, self.port = self.folder / "data", free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        _run([*self._as_user, self._pg_ctl, "-D", str(self._data), *args])

    def start(self) -> None:
        """Create the cluster (the first time) and start the server; return once it answers."""
        if not self._data.exists():
            _run(
                [
                    *self._as_user,
                    self._initdb,
                    "-D",
                    str(self._data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                ]
            )
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        # The server's output goes to a file: a pipe left open by it would never reach EOF.
        self._ctl("-o", options, "-l", str(self.folder / "server.log"), "-w", "start")

    def stop(self) -> None:
        """Stop the server (fast: open connections are cut, as in a restart)."""
        self._ctl("-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """Stop and start again on the same port and data."""
        self.stop()
        self.start()

    def remove(self) -> None:
        """Delete its folder (stopped first)."""
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL server in a temporary folder on a free port, stopped and removed on exit."""
    with running_postgres() as server:
        yield server.dsn


@contextlib.contextmanager
def running_postgres() -> Iterator[ThrowawayPostgres]:
    """A started ThrowawayPostgres, stopped and removed on exit."""
    server = ThrowawayPostgres()
    try:
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        server.remove()


def redis_answers(url: str) -> bool:
    """Whether a Redis server answers PING at `url` within 1 s."""
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def flush_redis(url: str) -> None:
    """Empty the database at `url` (every master's, when it names a cluster)."""

    async def flush() -> None:
        client = connect(url, socket_connect_timeout=2)
        try:
            if isinstance(client, RedisCluster):
                await client.flushdb(target_nodes=RedisCluster.PRIMARIES)
            else:
                await client.flushdb()
        finally:
            await client.aclose()

    asyncio.run(flush())


class ThrowawayRedis:
    """A Redis server of its own on a free port, which a test may restart. With `appendonly`,
    every write is in its append-only file before it is acknowledged (`appendfsync always`), so
    a restart keeps whatever was acknowledged; without, it keeps nothing on disk."""

    def __init__(self, *, appendonly: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.exit(
                "no Redis: install the Debian package 'redis-server' or set TEST_REDIS_URL",
                returncode=3,
            )
        self._binary = binary
        self.folder = Path(tempfile.mkdtemp(prefix="meshplate-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._argv = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.folder),
            "--appendonly",
            "yes" if appendonly else "no",
            *(["--appendfsync", "always"] if appendonly else []),
        ]
        self._server: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id, while it runs."""
        return None if self._server is None else self._server.pid

    def start(self) -> None:
        """Start the server; return once it answers."""
        self._server = subprocess.Popen(self._argv, stdout=subprocess.DEVNULL)
        wait_until(lambda: redis_answers(self.url), timeout_s=10, what="redis-server")

    def stop(self) -> None:
        """Stop the server (SIGTERM: what a restart does)."""
        if self._server is not None:
            self._server.terminate()
            self._server.wait(10)
            self._server = None

    def restart(self) -> None:
        """Stop and start again on the same port and folder."""
        self.stop()
        self.start()


@contextlib.contextmanager
def running_redis(*, appendonly: bool = False) -> Iterator[ThrowawayRedis]:
    """A started ThrowawayRedis, stopped and removed on exit."""
    server = ThrowawayRedis(appendonly=appendonly)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


@contextlib.contextmanager
def throwaway_redis() -> Iterator[str]:
    """A Redis server on a free port that keeps nothing on disk, stopped on exit."""
    with running_redis() as server:
        yield server.url


async def recreate_database(server_dsn: str, name: str) -> str:
    """Drop (forcibly) and create database `name`; its URL."""
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_dsn, name)
