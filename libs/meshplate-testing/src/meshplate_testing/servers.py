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


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL server in a temporary folder on a free port, stopped and removed on exit."""
    initdb, pg_ctl = _postgres_binary("initdb"), _postgres_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.exit(
            "no PostgreSQL: install the Debian package 'postgresql' or set TEST_POSTGRES_DSN",
            returncode=3,
        )
    # PostgreSQL refuses to run as root; root runs it as the 'postgres' system user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    # A folder of its own under /tmp: that user could not enter pytest's private ones.
    folder = Path(tempfile.mkdtemp(prefix="meshplate-postgres-"))
    if as_user:
        shutil.chown(folder, user="postgres")
    data, port = folder / "data", free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    try:
        _run([*as_user, initdb, "-D", str(data), "-U", "postgres", "-A", "trust"])
        # The server's output goes to a file: a pipe left open by it would never reach EOF.
        log = str(folder / "server.log")
        _run([*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", log, "-w", "start"])
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            _run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "stop"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def redis_answers(url: str) -> bool:
    """Whether a Redis server answers PING at `url` within 1 s."""
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def throwaway_redis() -> Iterator[str]:
    """A Redis server on a free port that keeps nothing on disk, stopped on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.exit(
            "no Redis: install the Debian package 'redis-server' or set TEST_REDIS_URL",
            returncode=3,
        )
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: redis_answers(url), timeout_s=10, what="redis-server")
        yield url
    finally:
        server.terminate()
        server.wait(10)


async def recreate_database(server_dsn: str, name: str) -> str:
    """Drop (forcibly) and create database `name`; its URL."""
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_dsn, name)
