"""What the bench asks the servers: the processes of a Redis and of a PostgreSQL server (when
they run on this machine, so their CPU can be counted), how many reads Redis has processed (one
per round trip of any client, pipelined commands included)."""

from __future__ import annotations

import asyncpg
import redis.asyncio

from bench.procs import cmdline, parent


def _is(pid: int, program: str) -> bool:
    return program in (cmdline(pid) or [""])[0]


async def redis_reads(url: str) -> int:
    """Reads the Redis server at `url` has processed since it started."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        return int((await client.info("stats"))["total_reads_processed"])
    finally:
        await client.aclose()


async def redis_pid(url: str) -> int | None:
    """The pid of the Redis server at `url`, when it runs on this machine (and is visible)."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        pid = int((await client.info("server"))["process_id"])
    finally:
        await client.aclose()
    return pid if _is(pid, "redis") else None


async def postmaster_pid(dsn: str) -> int | None:
    """The postmaster of the PostgreSQL server at `dsn`, when it runs on this machine."""
    conn = await asyncpg.connect(dsn)
    try:
        # Read while the backend lives: it exits with the connection.
        postmaster = parent(int(await conn.fetchval("SELECT pg_backend_pid()")))
    finally:
        await conn.close()
    return postmaster if postmaster and _is(postmaster, "postgres") else None
