"""Housekeeping of the job streams, one round at a time (the scheduler runs it): streams trimmed of
what every group has finished with, and the consumers of processes that are gone forgotten.

A stream is trimmed (XTRIM MINID) below the oldest entry some group still needs: its oldest
pending entry, or, with nothing pending, the last entry delivered to it. Entries no group has read
yet lie above every group's last delivered entry, so nothing unprocessed is ever dropped.

Each worker process has its own consumer name in every group (a pod's name in Kubernetes), so
every rollout would leave names behind. In each round a process says it is alive
(`tasks:consumer:<name>`, expiring after three rounds) and then deletes the consumers no live
process has claimed that have nothing pending. The deletion is a script that checks again that
nothing is pending, so an entry delivered in between is never dropped with its consumer; the
consumer of a process that died holding jobs stays until other workers have claimed them.
Liveness is said, not read off the consumers' idle times: RedisClient 7.0 counts a consumer idle from
the last entry it was given, so a live worker on a quiet stream would look as dead as a gone one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from meshplate_core.redis_client import RedisClient
from meshplate_core.streams import as_text
from worker.kinds import JobKind

log = logging.getLogger(__name__)

# KEYS: stream; ARGV: group, consumer. Deleted only if nothing is pending for it.
_FORGET = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


async def tidy(
    redis: RedisClient, consumer: str, kinds: Sequence[JobKind[Any]], *, every_s: float
) -> None:
    """One round for the process `consumer`, whose rounds come `every_s` apart."""
    await say_alive(redis, consumer, for_s=3 * every_s)
    for stream in sorted({kind.stream for kind in kinds}):
        await trim_consumed(redis, stream)
    for kind in kinds:
        for name in await forget_gone_consumers(redis, kind.stream, kind.name):
            log.info("forgot consumer %s of %s", name, kind.name)


def _alive(consumer: str) -> str:
    return f"tasks:consumer:{consumer}"


async def say_alive(redis: RedisClient, consumer: str, *, for_s: float) -> None:
    """Keep `consumer` from being forgotten for the next `for_s` seconds."""
    await redis.set(_alive(consumer), "1", px=max(1, int(for_s * 1000)))


async def forget_gone_consumers(redis: RedisClient, stream: str, group: str) -> list[str]:
    """Delete `group`'s consumers that no live process has claimed and that hold nothing; their
    names."""
    consumers: Any = await redis.xinfo_consumers(stream, group)
    script = redis.register_script(_FORGET)
    forgotten = []
    for consumer in consumers:
        name = as_text(consumer["name"])
        if consumer["pending"] or await redis.exists(_alive(name)):
            continue
        if await script(keys=[stream], args=[group, name]):
            forgotten.append(name)
    return forgotten


def _id(value: Any) -> tuple[int, int]:
    ms, _, seq = as_text(value).partition("-")
    return int(ms), int(seq or 0)


async def trim_consumed(redis: RedisClient, stream: str) -> int:
    """Drop the entries of `stream` that every group has acknowledged; how many went."""
    groups: Any = await redis.xinfo_groups(stream)
    if not groups:
        return 0
    needed: list[tuple[int, int]] = []
    for group in groups:
        if group["pending"]:
            summary: Any = await redis.xpending(stream, group["name"])
            needed.append(_id(summary["min"]))
        else:
            needed.append(_id(group["last-delivered-id"]))
    ms, seq = min(needed)
    if (ms, seq) == (0, 0):
        return 0
    return int(await redis.xtrim(stream, minid=f"{ms}-{seq}", approximate=False))
