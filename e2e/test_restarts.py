"""The whole stack behind Envoy, on a PostgreSQL server and a Redis server of this module's own,
each restarted while sign-ups, logins, reads and posts run through Envoy: the requests made
meanwhile get 503 at worst (never a 500), everything serves again by itself once the server is
back, and every acknowledged write is still there. After a Redis restart, a logout is still
honoured (the gateway follows the revocations again)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import redis

from meshplate_testing.databases import migrated_database
from meshplate_testing.servers import (
    ThrowawayPostgres,
    ThrowawayRedis,
    recreate_database,
    running_postgres,
    running_redis,
)

from .conftest import MIGRATIONS, Stack
from .identity import PASSWORD, log_in, sign_up

# How long after its server is back every request must succeed again.
RECOVERY_S = 15.0


@pytest.fixture(scope="module")
def postgres() -> Iterator[ThrowawayPostgres]:
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def stack_database_urls(postgres: ThrowawayPostgres) -> dict[str, str]:
    """The stack's databases, on this module's PostgreSQL (conftest's, overridden)."""

    def make(name: str) -> str:
        return asyncio.run(recreate_database(postgres.dsn, f"meshplate_test_{name}"))

    return {
        name: migrated_database(make, f"restarts_{name}", folder)
        for name, folder in MIGRATIONS.items()
    }


@pytest.fixture(scope="module")
def redis_server() -> Iterator[ThrowawayRedis]:
    with running_redis(appendonly=True) as server:
        yield server


@pytest.fixture
def flushed_redis(redis_server: ThrowawayRedis) -> str:
    """This module's Redis, emptied (conftest's, overridden)."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    return redis_server.url


@dataclass
class Traffic:
    """Sign-ups, logins, /me and posts through Envoy, with what each answered."""

    client: httpx.AsyncClient
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    signed_up: list[str] = field(default_factory=list)
    posted: list[int] = field(default_factory=list)
    # Posts sent (an answer lost to the fault may hide one that was stored).
    tried: int = 0
    last_failure_at: float = 0.0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def _seen(self, answer: httpx.Response) -> bool:
        self.statuses[answer.status_code] += 1
        if answer.status_code >= 300:
            self.last_failure_at = asyncio.get_running_loop().time()
        return answer.status_code < 300

    async def run(self, name: str) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            username = f"{name}{n}"
            with contextlib.suppress(httpx.TransportError):
                answer = await self.client.post(
                    "/api/v1/user",
                    json={
                        "name": "Someone",
                        "username": username,
                        "email": f"{username}@example.com",
                        "password": PASSWORD,
                    },
                )
                if not self._seen(answer):
                    await asyncio.sleep(0.05)
                    continue
                self.signed_up.append(username)
                login = await self.client.post(
                    "/api/v1/login", data={"username": username, "password": PASSWORD}
                )
                if not self._seen(login):
                    continue
                bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
                self._seen(await self.client.get("/api/v1/user/me/", headers=bearer))
                self.tried += 1
                post = await self.client.post(
                    f"/api/v1/{username}/post",
                    json={"title": "Written", "text": "During a restart."},
                    headers=bearer,
                )
                if self._seen(post):
                    self.posted.append(post.json()["id"])

    async def until_all_succeed(self, since: float) -> None:
        """Wait until a second has passed without a failure, after `since`."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(RECOVERY_S):
            while loop.time() - max(self.last_failure_at, since) < 1.0:
                await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _traffic(stack: Stack) -> AsyncIterator[Traffic]:
    async with stack.client() as client:
        traffic = Traffic(client)
        running = asyncio.gather(traffic.run("a"), traffic.run("b"))
        try:
            await asyncio.sleep(1)
            yield traffic
        finally:
            traffic.stop.set()
            await running


async def _stored(stack: Stack, traffic: Traffic) -> tuple[set[str], int]:
    async with stack.client() as client:
        users = set()
        for username in traffic.signed_up:
            if (await client.get(f"/api/v1/user/{username}")).status_code == 200:
                users.add(username)
        posts = 0
        for username in traffic.signed_up:
            page = await client.get(f"/api/v1/{username}/posts")
            posts += page.json()["total_count"]
    return users, posts


async def test_a_postgres_restart_under_traffic_gives_503_at_worst_and_loses_nothing(
    stack: Stack, postgres: ThrowawayPostgres
) -> None:
    async with _traffic(stack) as traffic:
        await asyncio.to_thread(postgres.restart)
        back = asyncio.get_running_loop().time()
        await traffic.until_all_succeed(since=back)
        before = traffic.statuses[201]
        await asyncio.sleep(1)
        after = traffic.statuses[201]

    users, posts = await _stored(stack, traffic)
    assert set(traffic.statuses) <= {200, 201, 503}, traffic.statuses
    assert after > before  # writes succeed again
    assert users == set(traffic.signed_up)
    assert len(traffic.posted) <= posts <= traffic.tried


async def test_a_redis_restart_under_traffic_gives_503_at_worst_and_logouts_still_hold(
    stack: Stack, redis_server: ThrowawayRedis
) -> None:
    async with stack.client() as client:
        await sign_up(client, "leaver")

    async with _traffic(stack) as traffic:
        await asyncio.to_thread(redis_server.restart)
        back = asyncio.get_running_loop().time()
        await traffic.until_all_succeed(since=back)

    # A logout after the restart reaches the gateway: the token is refused at once.
    async with stack.client() as client:
        token, _ = await log_in(client, "leaver")
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/api/v1/user/me/", headers=bearer)).status_code == 200
        assert (await client.post("/api/v1/logout", headers=bearer)).status_code == 200
        async with asyncio.timeout(1):
            while (await client.get("/api/v1/user/me/", headers=bearer)).status_code != 401:
                await asyncio.sleep(0.02)

    users, posts = await _stored(stack, traffic)
    assert set(traffic.statuses) <= {200, 201, 503}, traffic.statuses
    assert users == set(traffic.signed_up)
    assert len(traffic.posted) <= posts <= traffic.tried
