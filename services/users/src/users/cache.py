"""The users service's read-through cache in Redis (keys `users:*`), which cannot go stale.

Every cached entry records the generations it was read under; a writer bumps those generations
(INCR) after its commit. A reader fetches the current generations and the entry in one MGET and
uses the entry only if they match, so:
- a reader that loaded old rows before a write commits stores them under the old generation,
  which no later reader accepts (the race that plain "delete the key after writing" loses);
- the first read after a write returns (and caches) the new state, on every replica.
Generation keys have no TTL, entries do; with a `volatile-*` eviction policy only entries are
evicted. Misses of one key are loaded once per process (single flight). When Redis cannot be
reached, reads go to the database (logged and counted), and for a second after a failure the
cache is not tried at all, so a Redis that does not answer costs a request at most one of its
timeouts, however many reads it makes; when a bump fails, this process stops trusting the cache
for one entry lifetime, since an entry it can no longer invalidate may be served.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from meshplate_core.events import ReadsChanged, post_key, user_key, username_key
from meshplate_core.redis_client import REDIS_FAILURES, RedisClient, get_many
from meshplate_core.streams import encode

log = logging.getLogger(__name__)

T = TypeVar("T")
_LOG_EVERY_S = 10.0
_GENERATION_PREFIX = "users:gen:"
# Entries of users.reads_changed kept (approximately): readers follow it live, none replays it.
_CHANGES_KEPT = 10_000


@dataclass
class CacheStats:
    """Counters of what the cache did (exported as `users_cache_events_total`, users.server)."""

    hits: int = 0
    misses: int = 0
    loads: int = 0
    errors: int = 0


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How a value becomes JSON and back."""

    encode: Callable[[T], Any]
    decode: Callable[[Any], T]


def dataclass_codec(cls: type[T]) -> Codec[T]:
    """A codec for a dataclass of JSON-friendly fields and datetimes."""
    hints = typing.get_type_hints(cls)
    stamps = [
        name
        for name, hint in hints.items()
        if datetime in typing.get_args(hint) or hint is datetime
    ]

    def encode(value: T) -> dict[str, Any]:
        # T is bound to no protocol mypy knows as a dataclass instance; `codec` takes dataclasses.
        data = dataclasses.asdict(value)  # type: ignore[call-overload]
        for name in stamps:
            if data[name] is not None:
                data[name] = data[name].isoformat()
        return dict(data)

    def decode(data: Any) -> T:
        for name in stamps:
            if data[name] is not None:
                data[name] = datetime.fromisoformat(data[name])
        return cls(**data)

    return Codec(encode=encode, decode=decode)


def name_generation(username: str) -> str:
    """The generation of everything read by username: the user and their post pages."""
    return generation(username_key(username))


def id_generation(user_id: int) -> str:
    """The generation of a user read by id."""
    return generation(user_key(user_id))


def post_generation(post_id: int) -> str:
    """The generation of one post."""
    return generation(post_key(post_id))


def generation(key: str) -> str:
    """The Redis key of the generation of what `key` (of meshplate_core.events.ReadsChanged)
    names."""
    return f"{_GENERATION_PREFIX}{key}"


@dataclass
class ReadCache:
    """Generation-checked read-through cache with single flight; after a failed Redis call,
    Redis is left alone for `rest_s` (reads go to the database)."""

    redis: RedisClient
    ttl_s: float
    rest_s: float = 1.0
    stats: CacheStats = field(default_factory=CacheStats)
    _flights: dict[str, asyncio.Future[Any]] = field(default_factory=dict)
    _distrust_until: float = 0.0
    _resting_until: float = 0.0
    _last_log: float = 0.0
    _undelivered: set[str] = field(default_factory=set)

    async def read(
        self,
        key: str,
        generations: Sequence[str],
        load: Callable[[], Awaitable[T]],
        codec: Codec[T],
    ) -> T:
        """The value under `key` if it is current, else `load()` (once per process), cached."""
        if time.monotonic() < self._resting_until:
            return await load()
        if self._undelivered:
            await self.bump()
        if time.monotonic() < max(self._distrust_until, self._resting_until):
            return await load()
        try:
            *current, raw = await get_many(self.redis, [*generations, key])
        except REDIS_FAILURES as exc:
            self._failed("read", exc)
            return await load()
        gens = [int(value or 0) for value in current]
        if (hit := self._current(raw, gens)) is not None:
            self.stats.hits += 1
            return codec.decode(hit)
        self.stats.misses += 1

        async def fill() -> T:
            # A flight that ended just before this one began may have stored the entry already.
            try:
                stored = self._current(await self.redis.get(key), gens)
            except REDIS_FAILURES as exc:
                self._failed("read", exc)
                return await load()
            if stored is not None:
                return codec.decode(stored)
            value = await load()
            try:
                entry_json = json.dumps({"g": gens, "v": codec.encode(value)})
                await self.redis.set(key, entry_json, ex=max(1, int(self.ttl_s)))
            except REDIS_FAILURES as exc:
                self._failed("write", exc)
            return value

        # The flight lasts until the entry is stored, so late arrivals find it in Redis.
        return await self._load_once(f"{key}@{gens}", fill)

    @staticmethod
    def _current(raw: Any, gens: list[int]) -> Any:
        """The cached value if `raw` is an entry read under exactly these generations."""
        if raw is None:
            return None
        entry = json.loads(raw)
        return entry["v"] if entry["g"] == gens else None

    async def bump(self, *generations: str) -> None:
        """Invalidate every entry read under these generations (call after the commit), here
        and in every copy kept elsewhere: the same round trip publishes ReadsChanged.

        Bumps that could not be delivered are retried with the next read or bump (a second
        after a failure at the soonest), so other replicas stop serving the old entries soon
        after Redis answers again."""
        pending = self._undelivered | set(generations)
        if not pending:
            return
        if time.monotonic() < self._resting_until:
            self._not_delivered(pending)
            return
        changed = ReadsChanged(keys=[key.removeprefix(_GENERATION_PREFIX) for key in pending])
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in sorted(pending):
                    pipe.incr(key)
                pipe.xadd(
                    ReadsChanged.STREAM,
                    encode(changed),  # type: ignore[arg-type]  # redis-py wants a dict of Any
                    maxlen=_CHANGES_KEPT,
                    approximate=True,
                )
                await pipe.execute()
        except REDIS_FAILURES as exc:
            self._failed("invalidation", exc)
            self._not_delivered(pending)
        else:
            self._undelivered = set()

    def _not_delivered(self, pending: set[str]) -> None:
        self._undelivered = pending
        # Entries we could not invalidate live at most one TTL: until then, read the database.
        self._distrust_until = time.monotonic() + self.ttl_s

    async def _load_once(self, flight: str, load: Callable[[], Awaitable[T]]) -> T:
        running = self._flights.get(flight)
        if running is not None:
            result: T = await asyncio.shield(running)
            return result
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._flights[flight] = future
        try:
            self.stats.loads += 1
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            # Waiters get the error; nobody else needs to retrieve it.
            future.exception()
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._flights[flight]

    def _failed(self, what: str, exc: BaseException) -> None:
        self.stats.errors += 1
        now = time.monotonic()
        self._resting_until = now + self.rest_s
        if now - self._last_log > _LOG_EVERY_S:
            self._last_log = now
            log.warning(
                "cache %s failed (%s); serving from the database", what, exc.__class__.__name__
            )
