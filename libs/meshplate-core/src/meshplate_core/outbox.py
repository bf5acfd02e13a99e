"""The transactional outbox: events are written with the change they announce, published after.

A service inserts its events in the same database transaction as its change (`Outbox.add`), so an
event exists exactly when its change was committed; the relay then appends them to their Redis
streams and deletes them. A commit wakes the relay at once (`notify`), and it also polls, so rows
left by a crash or a Redis outage are published once Redis answers again. Delivery is
at-least-once: consumers deduplicate by `event_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from meshplate_core.events import Event
from meshplate_core.redis_client import REDIS_FAILURES, RedisClient
from meshplate_core.streams import encode

log = logging.getLogger(__name__)

_BATCH = 100


def outbox_table(metadata: MetaData) -> Table:
    """The `outbox` table, in a service's own metadata."""
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
        Column("stream", String(100), nullable=False),
        Column("fields", Text(), nullable=False),
        # Trim the stream to entries younger than this when publishing (None: keep all).
        Column("keep_s", Float()),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )


# What a relay round may meet: Redis or the database out; it is retried.
_RELAY_FAILURES: tuple[type[Exception], ...] = (*REDIS_FAILURES, SQLAlchemyError)


class Outbox:
    """Adds events inside a transaction and relays them to Redis streams."""

    def __init__(
        self,
        table: Table,
        engine: AsyncEngine,
        redis: RedisClient,
        *,
        keep_s: Mapping[str, float] | None = None,
    ) -> None:
        self._table = table
        self._engine = engine
        self._redis = redis
        self._keep_s = dict(keep_s or {})
        self._wake = asyncio.Event()
        self._stopping = False

    async def add(self, conn: AsyncConnection, *events: Event) -> None:
        """Write `events` in the caller's transaction; call `notify` after it commits."""
        if events:
            await conn.execute(
                insert(self._table),
                [
                    {
                        "stream": event.STREAM,
                        "fields": json.dumps(encode(event)),
                        "keep_s": self._keep_s.get(event.STREAM),
                        "created_at": event.occurred_at,
                    }
                    for event in events
                ],
            )

    def notify(self) -> None:
        """Wake the relay: something was committed."""
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish and delete the oldest pending events; how many were published."""
        table = self._table
        query = select(table).order_by(table.c.id).limit(_BATCH)
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Replicas relay side by side without publishing one row twice.
                query = query.with_for_update(skip_locked=True)
            rows = (await conn.execute(query)).all()
            for row in rows:
                await self._append(row.stream, json.loads(row.fields), row.keep_s)
            if rows:
                await conn.execute(delete(table).where(table.c.id.in_([row.id for row in rows])))
        return len(rows)

    async def _append(self, stream: str, fields: dict[str, str], keep_s: float | None) -> None:
        # redis-py's stubs want a dict of its own invariant key and value unions.
        if keep_s is None:
            await self._redis.xadd(stream, fields)  # type: ignore[arg-type]
            return
        oldest = f"{int((time.time() - keep_s) * 1000)}-0"
        await self._redis.xadd(stream, fields, minid=oldest)  # type: ignore[arg-type]

    def stop(self) -> None:
        """Ask the relay to finish: one last round, then `relay` returns."""
        self._stopping = True
        self._wake.set()

    async def relay(self, *, interval_s: float = 1.0) -> None:
        """Publish whenever woken, and every `interval_s` in any case, until `stop`.

        Stopping is a request, not a cancellation: a round is never cut off inside its
        transaction, where a cancelled driver call could leave row locks behind.
        """
        while True:
            # Cleared before publishing: a commit that lands meanwhile wakes the next round.
            self._wake.clear()
            try:
                while await self.publish_pending() == _BATCH:
                    pass
            except _RELAY_FAILURES as exc:
                log.warning("outbox relay failed, will retry: %s", exc.__class__.__name__)
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._wake.wait()
