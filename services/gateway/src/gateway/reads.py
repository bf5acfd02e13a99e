"""The gateway's read model: copies of the users service's answers, kept exact by its events.

A hot read (a profile, `/me`, a page of posts) is answered from memory instead of a call to users.
Each copy names what it depends on (the keys of `meshplate_core.events.ReadsChanged`); users
publishes those keys on `users.reads_changed` after every write's commit, and the gateway, which
follows the stream, drops the copies that depend on them. Three rules keep a copy from being read
after a write was acknowledged:

- Freshness barrier: before a copy is used, the stream's last entry is read (one Redis round trip
  shared by every read waiting at that moment, see meshplate_core.batching), and the read waits
  until the follower has applied it. A write acknowledged before the read arrived, on any gateway,
  is in the stream by then, so it is always applied first: a caller reads its own writes at once,
  whichever gateway serves it.
- A copy loaded while any change arrived is not kept (it may have been read before that write).
- While the stream cannot be followed, or its last entry cannot be read, reads go to users and
  copies are dropped; they are made again once the follower is back.

Copies also expire after `ttl_s`, which bounds what a write whose event was lost (users crashed
between its commit and the publish) can leave behind, and at most `max_entries` are kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from meshplate_core.batching import Batcher
from meshplate_core.events import ReadsChanged
from meshplate_core.following import Follower
from meshplate_core.redis_client import REDIS_FAILURES, RedisClient
from meshplate_core.streams import as_text

log = logging.getLogger(__name__)

T = TypeVar("T")
StreamId = tuple[int, int]
# How long a read waits for the follower to apply the stream's last entry before asking users.
_CATCH_UP_S = 0.05
_LOG_EVERY_S = 10.0


def stream_id(raw: Any) -> StreamId:
    """A stream entry id (`<ms>-<seq>`) as a comparable pair."""
    ms, _, seq = as_text(raw).partition("-")
    return int(ms or 0), int(seq or 0)


class ReadModel:
    """Copies of reads, each dropped when a key it depends on changes."""

    def __init__(self, redis: RedisClient, *, ttl_s: float, max_entries: int = 10_000) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        # key -> (value, the keys it depends on, monotonic expiry); oldest first.
        self._entries: dict[str, tuple[Any, tuple[str, ...], float]] = {}
        self._dependents: dict[str, set[str]] = {}
        self._epoch = 0
        self._follower: Follower | None = None
        self.synced = asyncio.Event()
        self._barrier: Batcher[None, StreamId] = Batcher(self._last_entry)
        self._last_log = 0.0

    @property
    def enabled(self) -> bool:
        return self._ttl_s > 0

    async def read(
        self, key: str, depends_on: Sequence[str], load: Callable[[], Awaitable[T]]
    ) -> T:
        """The copy under `key` when it is current, else `load()` (kept when safe)."""
        if not self.enabled:
            return await load()
        if not self.synced.is_set() or not await self._caught_up():
            self._drop_all()
            return await load()
        entry = self._entries.get(key)
        if entry is not None:
            if entry[2] > time.monotonic():
                value: T = entry[0]
                return value
            self._forget(key)
        epoch = self._epoch
        value = await load()
        if epoch == self._epoch and self.synced.is_set():
            self._keep(key, value, tuple(depends_on))
        return value

    def apply(self, event: ReadsChanged) -> None:
        """Drop every copy that depends on a changed key."""
        self._epoch += 1
        for changed in event.keys:
            for key in self._dependents.pop(changed, ()):
                self._forget(key)

    async def follow(self, redis: RedisClient) -> None:
        """Follow users.reads_changed from its current end, until `stop`."""
        self._follower = Follower(
            ReadsChanged,
            self.apply,
            synced=self.synced,
            replay=False,
            on_restart=self._drop_all,
        )
        await self._follower.follow(redis)

    def stop(self) -> None:
        """Stop following after the current read."""
        if self._follower is not None:
            self._follower.stop()

    async def _caught_up(self) -> bool:
        """Whether every change published before this call has been applied here."""
        try:
            last = await self._barrier.submit(None)
        except REDIS_FAILURES as exc:
            self._failed(exc)
            return False
        deadline = time.monotonic() + _CATCH_UP_S
        while self._position() < last:
            if time.monotonic() > deadline or not self.synced.is_set():
                return False
            await asyncio.sleep(0.001)
        return True

    def _position(self) -> StreamId:
        return stream_id(self._follower.last_id) if self._follower is not None else (0, 0)

    async def _last_entry(self, waiting: Sequence[None]) -> list[StreamId]:
        reply: Any = await self._redis.xrevrange(ReadsChanged.STREAM, count=1)
        last = stream_id(reply[0][0]) if reply else (0, 0)
        return [last] * len(waiting)

    def _keep(self, key: str, value: Any, depends_on: tuple[str, ...]) -> None:
        if len(self._entries) >= self._max_entries:
            # Full: the oldest tenth goes.
            for oldest in list(self._entries)[: self._max_entries // 10 or 1]:
                self._forget(oldest)
        self._entries[key] = (value, depends_on, time.monotonic() + self._ttl_s)
        for changed in depends_on:
            self._dependents.setdefault(changed, set()).add(key)

    def _forget(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        for changed in entry[1] if entry is not None else ():
            dependents = self._dependents.get(changed)
            if dependents is not None:
                dependents.discard(key)
                if not dependents:
                    del self._dependents[changed]

    def _drop_all(self) -> None:
        # Also what is being loaded now: it may predate a change this gateway did not see.
        self._epoch += 1
        self._entries.clear()
        self._dependents.clear()

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_log > _LOG_EVERY_S:
            self._last_log = now
            log.warning("read model bypassed: %s", exc.__class__.__name__)
