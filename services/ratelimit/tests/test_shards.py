"""Counters spread over shards (RATELIMIT_REDIS_SHARDS): each subject counts in one shard, the
shards' tags spread over the slot range, and limits and rule changes stay exact across shards and
replicas. On a Redis Cluster (`make test-scale`) the shards land on different masters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from meshplate.ratelimit.v1 import ratelimit_pb2
from meshplate_core.redis_client import RedisClient
from ratelimit.shards import Shards

if TYPE_CHECKING:
    from meshplate.ratelimit.v1.ratelimit_pb2_grpc import RateLimitServiceAsyncStub

SHARDS = 3
SUBJECTS = [f"user:{n}" for n in range(12)]


def test_each_shard_tag_lies_in_its_own_part_of_the_slot_range() -> None:
    for count in (1, 3, 7, 16):
        shards = Shards.spread(count)
        slots = [key_slot(shards.version_key(n).encode()) for n in range(count)]

        for n, slot in enumerate(slots):
            assert n * REDIS_CLUSTER_HASH_SLOTS // count <= slot
            assert slot < (n + 1) * REDIS_CLUSTER_HASH_SLOTS // count
        # A shard's counters are in its version's slot (one script touches both).
        assert all(
            key_slot(shards.counter_key(n, "ip:1.2.3.4", "rule7").encode()) == slots[n]
            for n in range(count)
        )


def test_a_subject_always_counts_in_one_shard_and_subjects_use_them_all() -> None:
    shards = Shards.spread(SHARDS)

    assert [shards.of(s) for s in SUBJECTS] == [Shards.spread(SHARDS).of(s) for s in SUBJECTS]
    assert {shards.of(s) for s in SUBJECTS} == set(range(SHARDS))


async def _check(stub: RateLimitServiceAsyncStub, subject: str) -> ratelimit_pb2.CheckLimitResponse:
    request = ratelimit_pb2.CheckLimitRequest(subject=subject, path="/api/v1/x", hits=1, tier_id=1)
    return await stub.CheckLimit(request)


async def test_limits_stay_exact_per_subject_across_shards_and_replicas(
    start_ratelimit: Callable[..., Any], redis_client: RedisClient
) -> None:
    first = await start_ratelimit(redis_shards=SHARDS)
    second = await start_ratelimit(redis_shards=SHARDS)
    await first.CreateRule(
        ratelimit_pb2.CreateRuleRequest(tier_id=1, path="/api/v1/x", limit=5, period_s=60)
    )

    answers = await asyncio.gather(
        *(_check(stub, subject) for subject in SUBJECTS for stub in [first, second] * 8)
    )

    per_subject = [answers[n * 16 : (n + 1) * 16] for n in range(len(SUBJECTS))]
    assert [sum(a.allowed for a in each) for each in per_subject] == [5] * len(SUBJECTS)
    counters = [key async for key in redis_client.scan_iter("ratelimit:{*") if b"rules" not in key]
    assert len(counters) == len(SUBJECTS)
    tags = {key.split(b"}")[0] for key in counters}
    assert len(tags) == SHARDS
    if isinstance(redis_client, RedisCluster):
        # Each shard's counters live on a master of their own.
        masters = {redis_client.get_node_from_key(key) for key in counters}
        assert len({master.name for master in masters if master is not None}) == SHARDS


async def test_a_rule_change_governs_the_next_request_in_every_shard_on_every_replica(
    start_ratelimit: Callable[..., Any],
) -> None:
    first = await start_ratelimit(redis_shards=SHARDS)
    second = await start_ratelimit(redis_shards=SHARDS)
    rule = (
        await first.CreateRule(
            ratelimit_pb2.CreateRuleRequest(tier_id=1, path="/api/v1/x", limit=100, period_s=60)
        )
    ).rule
    # One subject per shard, each counted once on the second replica under the old rule.
    shards = Shards.spread(SHARDS)
    one_each = [next(s for s in SUBJECTS if shards.of(s) == n) for n in range(SHARDS)]
    assert [(await _check(second, s)).limit for s in one_each] == [100] * SHARDS

    await first.UpdateRule(ratelimit_pb2.UpdateRuleRequest(tier_id=1, id=rule.id, limit=1))
    after = [await _check(second, s) for s in one_each]

    assert [(a.limit, a.allowed) for a in after] == [(1, False)] * SHARDS
