"""The gRPC services as real processes under sign-ins, reads and writes through a gateway.

Rolling restarts: two replicas each of auth, users and ratelimit, a gateway balancing over both of
each (gRPC's round robin over a list of addresses), every replica stopped with SIGTERM and started
again, one at a time: no request fails, and every acknowledged write is there. A crash: the one
users process killed with SIGKILL and started again: fast 503s meanwhile, never a 500, all served
again within seconds of its start, and every acknowledged write is there."""

from __future__ import annotations

import asyncio

from .conftest import Stack
from .replicas import REPLICAS, Replicas, loaded

MIN_READY_S = 2.0
# How long after a crashed service's start everything must be served again.
RECOVERY_S = 5.0


async def test_every_grpc_service_restarted_one_replica_at_a_time_fails_no_request(
    stack: Stack, stack_database_urls: dict[str, str], flushed_redis: str
) -> None:
    replicas = Replicas(stack, stack_database_urls, flushed_redis)
    try:
        async with loaded(stack, replicas, "roller") as load:
            for name in ("auth", "users", "ratelimit"):
                for index in range(REPLICAS):
                    # As a rollout's minReadySeconds: clients reconnect to a restarted replica
                    # within their longest reconnect backoff (1 s), and must have done so before
                    # its twin stops.
                    await asyncio.sleep(MIN_READY_S)
                    await replicas.restart(name, index)
            await asyncio.sleep(MIN_READY_S)
            await load.halt()
            stored = await load.stored()
    finally:
        await replicas.stop_all()

    assert not load.failures, (load.failures[:5], load.statuses)
    assert load.statuses["post 201"] > 20, load.statuses
    assert stored == len(load.written) == len(set(load.written))


async def test_users_killed_and_started_again_is_503_meanwhile_and_loses_nothing(
    stack: Stack, stack_database_urls: dict[str, str], flushed_redis: str
) -> None:
    replicas = Replicas(stack, stack_database_urls, flushed_redis, count=1)
    try:
        async with loaded(stack, replicas, "crasher") as load:
            await asyncio.sleep(1)
            await replicas.processes["users", 0].kill()
            await asyncio.sleep(1)
            await replicas.start("users", 0)
            started = asyncio.get_running_loop().time()
            # Served again within seconds of its start: a second without a failure.
            async with asyncio.timeout(RECOVERY_S):
                loop = asyncio.get_running_loop()
                while loop.time() - max(load.last_failure_at, started) < 1.0:
                    await asyncio.sleep(0.05)
            await load.halt()
            stored = await load.stored()
    finally:
        await replicas.stop_all()

    failed = {status for status in load.statuses if not status.endswith((" 200", " 201"))}
    assert failed, load.statuses  # the crash was seen
    assert all(status.endswith(" 503") for status in failed), load.statuses
    # A post answered 503 as users died may have been stored: never one acknowledged and lost.
    assert len(load.written) <= stored <= load.tried
