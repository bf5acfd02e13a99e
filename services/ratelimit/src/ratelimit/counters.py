"""Counting in Redis: one Lua script, one round trip for a whole batch of checks, atomic, TTL
always set.

The script also checks the rules' version (the shard's copy, ratelimit.shards, bumped on every
rule change): a caller holding older rules is told so (and reloads) before anything is counted,
which is how a rule change governs the very next request on every replica without an extra round
trip. Time is Redis's own (`TIME`), so replicas with skewed clocks share one timeline. Every key of
one call is under one shard's hash tag, so it runs on a Redis Cluster too.

- Sliding window: a sorted set of the admitted requests' times; a request is admitted only if
  fewer than `limit` remain inside the last `period`, so no interval of that length ever holds more
  than `limit` (no burst of twice the limit around a window edge).
- Fixed window: a counter per window aligned to multiples of `period` since the Unix epoch, so every
  quota resets at a known instant.
Rejected requests are not counted.

On one Redis server the script runs on a connection of the counters' own rather than through the
client's pool and retry layers, with one deadline for the whole call instead of redis-py's
per-operation socket timeout (which times each write with a task of its own): a decision's Redis
work in this process fell from about 0.1 to 0.04 ms of CPU (docs/ratelimit.md). Calls take turns
on it; the limiter batches what arrives meanwhile. On a Redis Cluster calls go through the cluster
client, which routes each to the master of its slot and follows the cluster's redirections.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from meshplate_core.redis_client import RedisClient
from ratelimit.domain import Algorithm, Limit

# KEYS: the shard's version key, then one counter key per check (all of that shard). ARGV: the
# caller's rules version, a unique prefix for this call's sorted-set members, then five values per
# check: period (ms), limit, hits, algorithm, the check's index. Checks are decided in order, so
# two of one key in a batch count as two requests; negative hits give that many back (the newest
# first, never more than are counted). Replies four numbers per check.
_SCRIPT = """
local version = redis.call('GET', KEYS[1]) or '0'
if version ~= ARGV[1] then return {-1} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 2, #KEYS do
  local base = (i - 2) * 5 + 2
  local period = tonumber(ARGV[base + 1])
  local limit = tonumber(ARGV[base + 2])
  local hits = tonumber(ARGV[base + 3])
  local key = KEYS[i]
  local allowed, count, retry, reset
  if ARGV[base + 4] == 'sliding_window' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
    count = redis.call('ZCARD', key)
    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    reset = 0
    if newest[2] then reset = tonumber(newest[2]) + period - now end
    if hits < 0 then
      local back = math.min(-hits, count)
      if back > 0 then redis.call('ZPOPMAX', key, back) end
      allowed, count, retry = 1, count - back, 0
    elseif count + hits > limit then
      local nth = count + hits - limit - 1
      local freeing = redis.call('ZRANGE', key, nth, nth, 'WITHSCORES')
      retry = period
      if freeing[2] then retry = tonumber(freeing[2]) + period - now end
      allowed = 0
    else
      if hits > 0 then
        local member = ARGV[2] .. ':' .. ARGV[base + 5] .. ':'
        for h = 1, hits do redis.call('ZADD', key, now, member .. h) end
        redis.call('PEXPIRE', key, period)
        reset = period
      end
      allowed, count, retry = 1, count + hits, 0
    end
  else
    local window = now - (now % period)
    local wkey = key .. ':' .. window
    count = tonumber(redis.call('GET', wkey) or '0')
    reset = window + period - now
    if hits < 0 then
      local back = math.min(-hits, count)
      if back > 0 then count = redis.call('DECRBY', wkey, back) end
      allowed, retry = 1, 0
    elseif count + hits > limit then
      allowed, retry = 0, reset
    else
      if hits > 0 then
        count = redis.call('INCRBY', wkey, hits)
        redis.call('PEXPIRE', wkey, reset)
      end
      allowed, retry = 1, 0
    end
  end
  out[#out + 1] = allowed
  out[#out + 1] = count
  out[#out + 1] = retry
  out[#out + 1] = reset
end
return out
"""


class StaleRulesError(Exception):
    """The shard's rules version is no longer the one the caller loaded its rules under."""


@dataclass(frozen=True, slots=True)
class Count:
    """What the script decided, in milliseconds."""

    allowed: bool
    used: int
    retry_after_ms: int
    reset_ms: int


class Counters:
    """Runs the counting script: on a connection of its own to `redis`'s server, or through the
    cluster client."""

    def __init__(self, redis: RedisClient, *, timeout_s: float) -> None:
        self._cluster: RedisCluster | None = None
        self._connection: AbstractConnection | None = None
        if isinstance(redis, RedisCluster):
            self._cluster = redis
        else:
            pool = redis.connection_pool
            # The client's settings (address, database, credentials, TLS) but its socket timeout.
            self._connection = pool.connection_class(
                **{**pool.connection_kwargs, "socket_timeout": None}
            )
        self._sha = hashlib.sha1(_SCRIPT.encode()).hexdigest()
        self._timeout_s = timeout_s
        self._turn = asyncio.Lock()

    async def close(self) -> None:
        """Close the connection (the next count would open it again)."""
        if self._connection is not None:
            await self._connection.disconnect()

    async def count(
        self, checks: Sequence[tuple[str, Limit, int]], *, version_key: str, rules_version: str
    ) -> list[Count]:
        """Count each check's hits against its limit under its counter key, in one round trip
        for all of them; every key, `version_key` included, of one shard (StaleRulesError if the
        rules changed; redis.exceptions.RedisError or OSError when Redis does not answer within
        the timeout)."""
        keys = [version_key]
        # Unique per call, not secret: the cheap generator (uuid4 asks the OS for randomness).
        args: list[str | int] = [rules_version, f"{random.getrandbits(128):032x}"]
        for index, (counter_key, limit, hits) in enumerate(checks):
            sliding = limit.algorithm is Algorithm.SLIDING_WINDOW
            keys.append(counter_key)
            args += [
                limit.period_s * 1000,
                limit.limit,
                hits,
                "sliding_window" if sliding else "fixed",
                index,
            ]
        reply: Any = await self._run(keys, args)
        if reply and int(reply[0]) == -1:
            raise StaleRulesError()
        values = [int(value) for value in reply]
        return [
            Count(allowed=allowed == 1, used=used, retry_after_ms=retry, reset_ms=reset)
            for allowed, used, retry, reset in zip(*[iter(values)] * 4, strict=True)
        ]

    async def _run(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        if self._cluster is not None:
            return await self._within_timeout(self._cluster.execute_command, keys, args)
        async with self._turn:
            return await self._within_timeout(self._call, keys, args)

    async def _within_timeout(
        self, call: Callable[..., Awaitable[Any]], keys: Sequence[str], args: Sequence[str | int]
    ) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                try:
                    return await call("EVALSHA", self._sha, len(keys), *keys, *args)
                except NoScriptError:
                    # A Redis that lost its scripts (restarted, flushed): EVAL loads it again.
                    return await call("EVAL", _SCRIPT, len(keys), *keys, *args)
        except TimeoutError:
            # The connection was closed mid-call (its state is unknown); the next opens anew.
            raise RedisTimeoutError(f"no answer from Redis within {self._timeout_s} s") from None

    async def _call(self, *command: str | int) -> Any:
        # hiredis packs the command in C, several times faster than redis-py's own packing.
        connection = self._connection
        assert connection is not None  # only the one-server path of _run calls it
        # hiredis' stub types the command as a tuple of one item (any length works).
        packed = hiredis.pack_command(command)  # type: ignore[arg-type]
        await connection.send_packed_command(packed, check_health=False)
        return await connection.read_response()
