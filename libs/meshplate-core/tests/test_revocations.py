"""The gateway's revocation list through a restart of Redis (with its append-only file, as
production runs it): what was revoked before is still known, and what is revoked after is
followed again without a restart of the gateway."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from redis.exceptions import ConnectionError as RedisConnectionError

from meshplate_core.events import TokensRevoked
from meshplate_core.redis_client import RedisClient, connect
from meshplate_core.revocations import RevocationList
from meshplate_core.streams import encode
from meshplate_core.tokens import Claims
from meshplate_testing.servers import running_redis


def _token(token_id: str) -> Claims:
    now = time.time()
    return Claims(
        user_id=7,
        token_id=token_id,
        type="access",
        issued_at=now,
        expires_at=now + 600,
        tier_id=None,
        is_superuser=False,
        family_id=None,
    )


async def _revoke(redis: RedisClient, token_id: str) -> None:
    # As auth publishes a logout; retried while the restarted Redis does not answer yet.
    event = TokensRevoked(
        user_id=7, token_id=token_id, expires_at=datetime.now(UTC) + timedelta(minutes=10)
    )
    async with asyncio.timeout(20):
        while True:
            try:
                # redis-py types the fields more narrowly than the dict of str it accepts.
                await redis.xadd(TokensRevoked.STREAM, encode(event))  # type: ignore[arg-type]
                return
            except (RedisConnectionError, OSError):
                await asyncio.sleep(0.1)


async def _until_revoked(revocations: RevocationList, token_id: str) -> None:
    async with asyncio.timeout(15):
        while not revocations.is_revoked(_token(token_id)):
            await asyncio.sleep(0.02)


async def test_revocations_are_followed_again_after_a_redis_restart() -> None:
    with running_redis(appendonly=True) as server:
        publisher, follower = connect(server.url), connect(server.url)
        revocations = RevocationList()
        following = asyncio.create_task(revocations.follow(follower))
        try:
            await _revoke(publisher, "before")
            await _until_revoked(revocations, "before")

            await asyncio.to_thread(server.restart)
            await _revoke(publisher, "after")
            await _until_revoked(revocations, "after")
        finally:
            revocations.stop()
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            await publisher.aclose()
            await follower.aclose()

    assert revocations.is_revoked(_token("before"))
    assert not revocations.is_revoked(_token("never"))
