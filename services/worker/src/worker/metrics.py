"""The worker's Prometheus metrics: job outcomes per kind (counted by the deliveries) and, read
from Redis at each scrape, each kind's queue: entries waiting (not yet read), pending (read, not
finished: running, read ahead or waiting for a retry) and dead."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from meshplate_core.metrics import export_counters, export_gauges
from meshplate_core.redis_client import RedisClient
from meshplate_core.streams import as_text
from worker.kinds import JobKind


class QueueDepth:
    """The last reading of every kind's queue, refreshed by `read` before each scrape."""

    def __init__(self, redis: RedisClient, kinds: Sequence[JobKind[Any]]) -> None:
        self._redis = redis
        self._kinds = kinds
        self.latest: dict[tuple[str, ...], float] = {}

    async def read(self) -> None:
        """Ask Redis (one XINFO GROUPS and one XLEN per kind)."""
        depth: dict[tuple[str, ...], float] = {}
        for kind in self._kinds:
            groups: Any = []
            if await self._redis.exists(kind.stream):
                groups = await self._redis.xinfo_groups(kind.stream)
            mine = next((g for g in groups if as_text(g["name"]) == kind.name), None)
            depth[(kind.name, "waiting")] = float((mine or {}).get("lag") or 0)
            depth[(kind.name, "pending")] = float((mine or {}).get("pending") or 0)
            depth[(kind.name, "dead")] = float(await self._redis.xlen(kind.dead_stream))
        self.latest = depth


def register_worker_metrics(
    registry: CollectorRegistry, outcomes: dict[tuple[str, str], int], depth: QueueDepth
) -> None:
    """Outcomes ({(kind, outcome): count}) and queue depth, read at each scrape."""
    export_counters(
        registry,
        "worker_jobs",
        "Attempts finished, by job kind and outcome (succeeded, failed: will retry, dead, "
        "handed_back at shutdown, overtaken by another delivery).",
        labels=["kind", "outcome"],
        read=lambda: {key: float(count) for key, count in outcomes.items()},
    )
    export_gauges(
        registry,
        "worker_queue_depth",
        "Entries per job kind: waiting (not read yet), pending (read, not finished), dead.",
        labels=["kind", "state"],
        read=lambda: depth.latest,
    )
