"""FastStream subscribers for a job kind: one reading new entries, one claiming abandoned ones.

Both are in the kind's consumer group under this process's consumer name. The reading one takes
new entries (`>`), up to `concurrency` at a time; the claiming one (XAUTOCLAIM) takes entries
that stayed pending longer than `claim_idle_s`: those of a consumer that died, those handed back
at shutdown, and failed ones due for a retry. Acknowledging is the deliveries' business
(AckPolicy.MANUAL): FastStream never acks or rejects on its own.
"""

from __future__ import annotations

from typing import Any

from faststream import AckPolicy
from faststream.redis import RedisRouter, StreamSub
from faststream.redis.annotations import RedisStreamMessage

from worker.delivery import Deliveries
from worker.kind import JobKind


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

    async def undecoded(_message: Any) -> None:
        # FastStream would decode the body before the handler runs, and an entry it cannot
        # decode would then stay pending for ever; Deliveries decodes (and buries) it instead.
        return None

    async def deliver(message: RedisStreamMessage) -> None:
        raw: Any = message.raw_message
        await deliveries.deliver(kind, raw["message_ids"][0], raw["data"])

    reading = StreamSub(
        kind.stream,
        group=kind.name,
        consumer=consumer,
        # The group itself is created at the stream's start beforehand (see app.py), so entries
        # added before any worker ran are read too; FastStream then reads only new ones.
        last_id=">",
        max_records=1,
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
    router.subscriber(
        stream=reading,
        ack_policy=AckPolicy.MANUAL,
        no_reply=True,
        decoder=undecoded,
        max_workers=concurrency,
        title=f"{kind.name}:read",
    )(deliver)
    router.subscriber(
        stream=claiming,
        ack_policy=AckPolicy.MANUAL,
        no_reply=True,
        decoder=undecoded,
        title=f"{kind.name}:claim",
    )(deliver)
