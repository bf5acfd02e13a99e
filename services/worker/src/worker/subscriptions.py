"""FastStream subscribers for a job kind: one reading new entries, one claiming abandoned ones.

Both are in the kind's consumer group under this process's consumer name, and both take entries
in batches. The reading one takes new entries (`>`), up to `concurrency` per read; the claiming
one (XAUTOCLAIM) takes entries that stayed pending longer than `claim_idle_s`: those of a consumer
that died, those handed back at shutdown, and failed ones due for a retry. Each batch goes to the
deliveries as it was read (a parser that leaves the entries alone: one FastStream could not parse
must not stay pending for ever). Acknowledging is the deliveries' business (AckPolicy.MANUAL):
FastStream never acks or rejects on its own.
"""

from __future__ import annotations

from typing import Any

from faststream import AckPolicy
from faststream.message import StreamMessage
from faststream.redis import RedisRouter, StreamSub

from meshplate_core.streams import as_text
from worker.delivery import Deliveries
from worker.kind import JobKind


async def _as_read(raw: Any) -> StreamMessage[Any]:
    # A batch's raw message: {"message_ids": [...], "data": [fields, ...]}.
    ids = raw["message_ids"]
    return StreamMessage(
        raw_message=raw,
        body=list(zip(ids, raw["data"], strict=True)),
        correlation_id=as_text(ids[0]),
    )


async def _entries(message: StreamMessage[Any]) -> Any:
    return message.body


def subscribe(
    router: RedisRouter,
    kind: JobKind[Any],
    deliveries: Deliveries,
    *,
    consumer: str,
    concurrency: int,
    claim_idle_s: float,
    claim_interval_s: float,
) -> None:
    """Add `kind`'s two subscribers to `router`."""

    async def deliver(entries: Any) -> None:
        await deliveries.take(kind, entries)

    reading = StreamSub(
        kind.stream,
        group=kind.name,
        consumer=consumer,
        # The group itself is created at the stream's start beforehand (see app.py), so entries
        # added before any worker ran are read too; FastStream then reads only new ones.
        last_id=">",
        batch=True,
        max_records=concurrency,
        polling_interval=1000,
    )
    claiming = StreamSub(
        kind.stream,
        group=kind.name,
        consumer=consumer,
        last_id=">",
        batch=True,
        min_idle_time=int(claim_idle_s * 1000),
        polling_interval=int(claim_interval_s * 1000),
    )
    for stream, title in ((reading, "read"), (claiming, "claim")):
        router.subscriber(
            stream=stream,
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
            parser=_as_read,
            decoder=_entries,
            title=f"{kind.name}:{title}",
        )(deliver)
