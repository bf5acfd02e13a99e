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
from redis.exceptions import ResponseError

from meshplate_core.events import Event
from meshplate_core.redis_client import REDIS_FAILURES, RedisClient
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


async def ensure_group(redis: RedisClient, stream: str, group: str) -> None:
    """Create the consumer group at the stream's start (and the stream), unless it exists."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def consume(
    redis: RedisClient,
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
        except REDIS_FAILURES as exc:
            log.warning("consuming %s failed: %s", stream, exc.__class__.__name__)
            await asyncio.sleep(retry_after_s)
        except _HandlerFailedError:
            await asyncio.sleep(retry_after_s)


class _HandlerFailedError(Exception):
    pass


async def _handle_one(
    redis: RedisClient,
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
