"""Forgetting the consumers of processes that are gone.

Each worker process has its own consumer name in every group (a pod's name in Kubernetes), so
every rollout would leave names behind. In each housekeeping round a process says it is alive
(`tasks:consumer:<name>`, expiring after three rounds) and then deletes the consumers no live
process has claimed that have nothing pending. The deletion is a script that checks again that
nothing is pending, so an entry delivered in between is never dropped with its consumer; the
consumer of a process that died holding jobs stays until other workers have claimed them.

Liveness is said, not read off the consumers' idle times: Redis 7.0 counts a consumer idle from
the last entry it was given, so a live worker on a quiet stream would look as dead as a gone one.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from meshplate_core.streams import as_text

# KEYS: stream; ARGV: group, consumer. Deleted only if nothing is pending for it.
_FORGET = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def _alive(consumer: str) -> str:
    return f"tasks:consumer:{consumer}"


async def say_alive(redis: Redis, consumer: str, *, for_s: float) -> None:
    """Keep `consumer` from being forgotten for the next `for_s` seconds."""
    await redis.set(_alive(consumer), "1", px=max(1, int(for_s * 1000)))


async def forget_gone_consumers(redis: Redis, stream: str, group: str) -> list[str]:
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
