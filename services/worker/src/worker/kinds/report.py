"""A report: how many live users each tier has, read from the users service."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import ClassVar, Protocol

from meshplate_core.events import JOBS_TAG, Event
from worker.kinds import JobKind

NO_TIER = "(none)"


class ReportRequested(Event):
    """Time for the users-by-tier report (named after its slot by the scheduler)."""

    STREAM: ClassVar[str] = f"{JOBS_TAG}:worker.reports"


class Directory(Protocol):
    """Whoever knows the users and tiers (the users service, over gRPC)."""

    def tiers(self) -> AsyncIterator[tuple[int, str]]:
        """Every tier as (id, name)."""
        ...

    def user_tiers(self) -> AsyncIterator[int | None]:
        """The tier id of every live user (None: no tier)."""
        ...


async def count_users_by_tier(directory: Directory) -> dict[str, object]:
    """{"users": total, "by_tier": {tier name: users}} (tiers without users count 0)."""
    names = {tier_id: name async for tier_id, name in directory.tiers()}
    counts: Counter[str] = Counter(dict.fromkeys(names.values(), 0))
    total = 0
    async for tier_id in directory.user_tiers():
        total += 1
        counts[NO_TIER if tier_id is None else names.get(tier_id, f"tier {tier_id}")] += 1
    return {"users": total, "by_tier": dict(sorted(counts.items()))}


def users_by_tier(directory: Directory) -> JobKind[ReportRequested]:
    """The kind: the report as JSON, as the job's result."""

    async def run(_request: ReportRequested) -> str:
        return json.dumps(await count_users_by_tier(directory))

    return JobKind(
        name="users-by-tier-report",
        model=ReportRequested,
        run=run,
        job_id=lambda request: request.event_id,
        system=True,
    )
