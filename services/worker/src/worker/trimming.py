"""Keeping job streams short: entries every consumer group has finished with are dropped.

A stream is trimmed (XTRIM MINID) below the oldest entry some group still needs: its oldest
pending entry, or, with nothing pending, the last entry delivered to it. Entries no group has
read yet lie above every group's last delivered entry, so nothing unprocessed is ever dropped.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from meshplate_core.streams import as_text


def _id(value: Any) -> tuple[int, int]:
    ms, _, seq = as_text(value).partition("-")
    return int(ms), int(seq or 0)


async def trim_consumed(redis: Redis, stream: str) -> int:
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
