"""Events on Redis streams: one wire format for every publisher and consumer.

Entries carry the event in FastStream's JSON envelope (`__data__` = {"data", "headers"}), so the
worker's FastStream subscribers and the services' own loops read the same entries. `consume` is the
loop for services that react to another service's events without running a FastStream app: it
reads as one consumer of a consumer group, acknowledges only after the handler succeeded, and
retries what failed (its own pending entries) before reading new ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from opentelemetry.context import Context
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from meshplate_core.events import Event
from meshplate_core.tracing import extract, inject

log = logging.getLogger(__name__)

DATA_KEY = "__data__"
E = TypeVar("E", bound=Event)


def as_text(value: Any) -> str:
    """A Redis reply's value as text (replies come as bytes; a missing one is "")."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def encode(event: Event) -> dict[str, str]:
    """The fields of the stream entry that carries `event`."""
    headers = {"content-type": "application/json", "correlation_id": event.event_id}
    # The request that caused the event: its handling belongs to the same trace.
    inject(headers)
    envelope = {"data": event.model_dump_json(), "headers": headers}
    return {DATA_KEY: json.dumps(envelope)}


def decode(model: type[E], fields: Mapping[Any, Any]) -> E:
    """The event in a stream entry's fields (keys and values as bytes or str)."""
    raw = fields.get(DATA_KEY.encode(), fields.get(DATA_KEY))
    if raw is None:
        raise ValueError("stream entry has no event")
    envelope = json.loads(raw)
    return model.model_validate_json(envelope["data"])


def decode_traced(model: type[E], fields: Mapping[Any, Any]) -> tuple[E, Context]:
    """`decode` and `trace_context` at once (the envelope is read once): the event, and the trace
    context it was written under. Raises as `decode` does."""
    raw = fields.get(DATA_KEY.encode(), fields.get(DATA_KEY))
    if raw is None:
        raise ValueError("stream entry has no event")
    envelope = json.loads(raw)
    event = model.model_validate_json(envelope["data"])
    headers = envelope.get("headers")
    return event, extract(headers) if isinstance(headers, dict) else Context()


def trace_context(fields: Mapping[Any, Any]) -> Context:
    """The trace context an entry was written under (empty when it has none or is malformed)."""
    raw = fields.get(DATA_KEY.encode(), fields.get(DATA_KEY))
    try:
        headers = json.loads(raw)["headers"]
    except (TypeError, ValueError, KeyError):
        return Context()
    return extract(headers) if isinstance(headers, dict) else Context()


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the consumer group at the stream's start (and the stream), unless it exists."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def consume(
    redis: Redis,
    model: type[E],
    *,
    group: str,
    consumer: str,
    handle: Callable[[E], Awaitable[None]],
    block_ms: int = 1000,
    retry_after_s: float = 1.0,
) -> None:
    """Forever: hand each entry of `model.STREAM` to `handle` once it succeeds, then ack it."""
    stream = model.STREAM
    ensure_needed = True
    while True:
        try:
            if ensure_needed:
                await ensure_group(redis, stream, group)
                ensure_needed = False
            # Our own unacknowledged entries first (a failed handler, a restart), then new ones.
            # redis-py types replies loosely: [(stream, [(entry id, fields), ...])].
            pending: Any = await redis.xreadgroup(group, consumer, {stream: "0"}, count=10)
            batch: Any = pending if pending and pending[0][1] else None
            if batch is None:
                batch = await redis.xreadgroup(
                    group, consumer, {stream: ">"}, count=10, block=block_ms
                )
            for _name, entries in batch or ():
                for entry_id, fields in entries:
                    await _handle_one(redis, model, group, entry_id, fields, handle)
        except asyncio.CancelledError:
            raise
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                ensure_needed = True
            log.warning("consuming %s failed: %s", stream, exc)
            await asyncio.sleep(retry_after_s)
        except (RedisError, OSError) as exc:
            log.warning("consuming %s failed: %s", stream, exc.__class__.__name__)
            await asyncio.sleep(retry_after_s)
        except _HandlerFailedError:
            await asyncio.sleep(retry_after_s)


class _HandlerFailedError(Exception):
    pass


async def _handle_one(
    redis: Redis,
    model: type[E],
    group: str,
    entry_id: Any,
    fields: Mapping[Any, Any],
    handle: Callable[[E], Awaitable[None]],
) -> None:
    try:
        event = decode(model, fields)
    except ValueError:
        # A malformed entry can never succeed: drop it rather than retry it forever.
        log.error("dropping malformed entry %s of %s", entry_id, model.STREAM)
        await redis.xack(model.STREAM, group, entry_id)
        return
    try:
        await handle(event)
    except Exception as exc:
        log.exception("handling %s %s failed; will retry", model.STREAM, event.event_id)
        raise _HandlerFailedError from exc
    await redis.xack(model.STREAM, group, entry_id)


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
        redis: Redis,
        model: type[E],
        handle: Callable[[E], None],
        *,
        block_ms: int = 1000,
        retry_s: float = 0.5,
        synced: asyncio.Event | None = None,
        replay: bool = True,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self._redis = redis
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

    async def run(self) -> None:
        """Replay, then follow, until stopped; failures are logged and retried."""
        stream = self._model.STREAM
        while not self._stopping:
            try:
                if not self.synced.is_set():
                    if self._replay:
                        start = "-" if self._last_id == "0-0" else f"({self._last_id}"
                        self._apply(await self._redis.xrange(stream, min=start))
                    else:
                        last: Any = await self._redis.xrevrange(stream, count=1)
                        self._last_id = as_text(last[0][0]) if last else self._last_id
                        if self._on_restart is not None:
                            self._on_restart()
                    self.synced.set()
                reply: Any = await self._redis.xread(
                    {stream: self._last_id}, block=self._block_ms, count=500
                )
                for _name, entries in reply or ():
                    self._apply(entries)
            except (RedisError, OSError) as exc:
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
