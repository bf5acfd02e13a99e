"""The periodic cleanup: auth drops revocations and refresh families whose tokens have expired."""

from __future__ import annotations

from typing import ClassVar, Protocol

from meshplate_core.events import JOBS_TAG, Event
from worker.kinds import JobKind


class PurgeRequested(Event):
    """Time for a cleanup (the scheduler names the event after its slot, so one per slot)."""

    STREAM: ClassVar[str] = f"{JOBS_TAG}:worker.purge"


class ExpiredTokens(Protocol):
    """Whoever keeps the token state (auth, over gRPC)."""

    async def purge_expired(self) -> tuple[int, int]:
        """Remove what has expired: (revocations removed, refresh families removed)."""
        ...


def purge_expired(tokens: ExpiredTokens) -> JobKind[PurgeRequested]:
    """The kind: one purge call; its counts are the result."""

    async def run(_request: PurgeRequested) -> str:
        revocations, families = await tokens.purge_expired()
        return f"removed {revocations} revocations and {families} refresh families"

    return JobKind(
        name="purge-expired",
        model=PurgeRequested,
        run=run,
        job_id=lambda request: request.event_id,
        system=True,
    )
