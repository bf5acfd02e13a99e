"""Each job kind's FastStream handler, subscribed twice to the kind's stream: once reading new
entries, once claiming abandoned ones.

Both subscriptions are in the kind's consumer group under this process's consumer name. The
reading one takes new entries (`>`); the claiming one is FastStream's own reclaim (XAUTOCLAIM,
`min_idle_time`): entries pending longer than the claim idle time, those of a consumer that died,
those handed back at shutdown, and failed ones due for a retry. Each handler runs up to
`concurrency` entries at once (one more is read ahead, waiting for a slot). FastStream hands the
entry over as read, id and fields (the parser leaves them alone: an entry it could not parse
must not stay pending for ever, it goes to the dead-letter stream), and never acknowledges on
its own (AckPolicy.MANUAL): the deliveries acknowledge an entry together with its outcome.
"""

from __future__ import annotations

from typing import Any

from faststream import AckPolicy
from faststream.message import StreamMessage
from faststream.redis import RedisRouter, StreamSub

from meshplate_core.streams import as_text
from worker.delivery import Deliveries
from worker.kinds import JobKind


async def _as_read(raw: Any) -> StreamMessage[Any]:
    # One entry's raw message: {"message_ids": [id], "data": fields, ...}.
    [entry_id] = raw["message_ids"]
    return StreamMessage(
        raw_message=raw, body=(entry_id, raw["data"]), correlation_id=as_text(entry_id)
    )


async def _entry(message: StreamMessage[Any]) -> Any:
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
    """Add `kind`'s handler to `router`, reading and claiming."""

    async def handle(entry: Any) -> None:
        entry_id, fields = entry
        await deliveries.deliver(kind, entry_id, fields)

    # The group itself is created at the stream's start beforehand (see app.py), so entries added
    # before any worker ran are read too; FastStream then reads only new ones.
    reading = StreamSub(
        kind.stream,
        group=kind.name,
        consumer=consumer,
        last_id=">",
        max_records=concurrency,
        polling_interval=1000,
    )
    claiming = StreamSub(
        kind.stream,
        group=kind.name,
        consumer=consumer,
        last_id=">",
        min_idle_time=int(claim_idle_s * 1000),
        polling_interval=int(claim_interval_s * 1000),
    )
    for stream, title in ((reading, "read"), (claiming, "claim")):
        router.subscriber(
            stream=stream,
            # At least two: one is FastStream's inline (non-concurrent) subscriber.
            max_workers=concurrency + 1,
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
            parser=_as_read,
            decoder=_entry,
            title=f"{kind.name}:{title}",
        )(handle)
