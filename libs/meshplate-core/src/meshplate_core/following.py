"""Following streams: state every replica must hold whole (revoked tokens, users' tiers, the
gateways' read model), kept by reading a stream from its start, then following it.

`Follower` reads one stream; `following` runs followers in tasks of their own on a Redis
connection of their own while a block runs, and stops them, bounded, when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

from meshplate_core.events import Event
from meshplate_core.redis_client import REDIS_FAILURES, RedisClient, connect
from meshplate_core.streams import as_text, decode

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)


class Followed(Protocol):
    """What `following` runs: something that follows a stream on the connection it is given
    until asked to stop."""

    async def follow(self, redis: RedisClient) -> None:
        """Follow until `stop`."""
        ...

    def stop(self) -> None:
        """Return from `follow` after the current read."""
        ...


@contextlib.asynccontextmanager
async def following(
    redis_url: str, *followed: Followed, stop_s: float = 3.0
) -> AsyncIterator[None]:
    """Each of `followed` following in a task of its own while the block runs, on one Redis
    connection of their own (their reads block: no short socket timeout). At the end they are
    asked to stop and cancelled (a cancellation landing in the Redis client's read can be
    absorbed; the request still ends the loop), waited for up to `stop_s`, and the connection
    closed: shutting down never waits on a read that does not come back."""
    redis = connect(redis_url, socket_connect_timeout=2)
    tasks = [asyncio.create_task(each.follow(redis)) for each in followed]
    try:
        yield
    finally:
        for each in followed:
            each.stop()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(stop_s):
                await asyncio.gather(*tasks, return_exceptions=True)
        await redis.aclose()


class Follower:
    """Reads one stream from its start, then follows it, handing every event to `handle`.

    For state every replica must hold whole (revoked tokens, users' tiers): no consumer group,
    every follower sees every entry. `synced` is set once the replay reached the end, and cleared
    while the stream cannot be read. With `replay` false there is no replay: following starts at
    the stream's end, and again at its end after the stream could not be read, each time after
    `on_restart` (for followers that drop what they hold then). Stop it with `stop()`: a cancellation landing inside the
    Redis client's blocking read can be absorbed by it.
    """

    def __init__(
        self,
        model: type[E],
        handle: Callable[[E], None],
        *,
        block_ms: int = 1000,
        retry_s: float = 0.5,
        synced: asyncio.Event | None = None,
        replay: bool = True,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self._model = model
        self._handle = handle
        self._block_ms = block_ms
        self._retry_s = retry_s
        self._last_id = "0-0"
        self._replay = replay
        self._on_restart = on_restart
        self._stopping = False
        self.synced = synced or asyncio.Event()

    @property
    def last_id(self) -> str:
        """The id of the last entry handed over (`0-0` before the first)."""
        return self._last_id

    def stop(self) -> None:
        """Return after the current read."""
        self._stopping = True

    async def follow(self, redis: RedisClient) -> None:
        """Replay, then follow, on `redis` (a connection without a short socket timeout: the
        reads block) until stopped; failures are logged and retried."""
        stream = self._model.STREAM
        while not self._stopping:
            try:
                if not self.synced.is_set():
                    if self._replay:
                        start = "-" if self._last_id == "0-0" else f"({self._last_id}"
                        self._apply(await redis.xrange(stream, min=start))
                    else:
                        last: Any = await redis.xrevrange(stream, count=1)
                        self._last_id = as_text(last[0][0]) if last else self._last_id
                        if self._on_restart is not None:
                            self._on_restart()
                    self.synced.set()
                reply: Any = await redis.xread(
                    {stream: self._last_id}, block=self._block_ms, count=500
                )
                for _name, entries in reply or ():
                    self._apply(entries)
            except REDIS_FAILURES as exc:
                if self.synced.is_set():
                    log.warning("lost %s (%s)", stream, exc.__class__.__name__)
                self.synced.clear()
                await asyncio.sleep(self._retry_s)

    def _apply(self, entries: Any) -> None:
        for entry_id, fields in entries:
            try:
                self._handle(decode(self._model, fields))
            except ValueError:
                log.error("ignoring malformed entry %s of %s", entry_id, self._model.STREAM)
            self._last_id = as_text(entry_id)
