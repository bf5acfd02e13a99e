"""Counting in Redis: one Lua script, one round trip, atomic, TTL always set.

The script also checks the rules' version (`ratelimit:rules:version`, bumped on every rule
change): a caller holding older rules is told so (and reloads) before anything is counted, which is
how a rule change governs the very next request on every replica without an extra round trip. Time
is Redis's own (`TIME`), so replicas with skewed clocks share one timeline.

- Sliding window: a sorted set of the admitted requests' times; a request is admitted only if
  fewer than `limit` remain inside the last `period`, so no interval of that length ever holds more
  than `limit` (no burst of twice the limit around a window edge).
- Fixed window: a counter per window aligned to multiples of `period` since the Unix epoch, so every
  quota resets at a known instant.
Rejected requests are not counted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from ratelimit.domain import Algorithm, Limit

VERSION_KEY = "ratelimit:rules:version"

_SCRIPT = """
local version = redis.call('GET', KEYS[2]) or '0'
if version ~= ARGV[1] then return {-1, 0, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local hits = tonumber(ARGV[4])
local key = KEYS[1]
if ARGV[5] == 'sliding_window' then
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
  local count = redis.call('ZCARD', key)
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  local reset = 0
  if newest[2] then reset = tonumber(newest[2]) + period - now end
  if count + hits > limit then
    local nth = count + hits - limit - 1
    local freeing = redis.call('ZRANGE', key, nth, nth, 'WITHSCORES')
    local retry = period
    if freeing[2] then retry = tonumber(freeing[2]) + period - now end
    return {0, count, retry, reset}
  end
  if hits > 0 then
    for i = 1, hits do redis.call('ZADD', key, now, ARGV[6] .. ':' .. i) end
    redis.call('PEXPIRE', key, period)
    reset = period
  end
  return {1, count + hits, 0, reset}
end
local window = now - (now % period)
local wkey = key .. ':' .. window
local count = tonumber(redis.call('GET', wkey) or '0')
local reset = window + period - now
if count + hits > limit then return {0, count, reset, reset} end
if hits > 0 then
  count = redis.call('INCRBY', wkey, hits)
  redis.call('PEXPIRE', wkey, reset)
end
return {1, count, 0, reset}
"""


class StaleRulesError(Exception):
    """The rules version changed since the caller loaded its rules."""


@dataclass(frozen=True, slots=True)
class Count:
    """What the script decided, in milliseconds."""

    allowed: bool
    used: int
    retry_after_ms: int
    reset_ms: int


class Counters:
    """Runs the counting script."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_SCRIPT)

    async def count(
        self, counter_key: str, limit: Limit, *, hits: int, rules_version: str
    ) -> Count:
        """Count `hits` against `limit` under `counter_key` (StaleRulesError if rules changed)."""
        algorithm = "sliding_window" if limit.algorithm is Algorithm.SLIDING_WINDOW else "fixed"
        reply: Any = await self._script(
            keys=[counter_key, VERSION_KEY],
            args=[
                rules_version,
                limit.period_s * 1000,
                limit.limit,
                hits,
                algorithm,
                uuid.uuid4().hex,
            ],
        )
        state, used, retry_ms, reset_ms = (int(value) for value in reply)
        if state == -1:
            raise StaleRulesError()
        return Count(allowed=state == 1, used=used, retry_after_ms=retry_ms, reset_ms=reset_ms)
