"""The boilerplate's sample task: `POST /api/v1/tasks/task?message=...`."""

from __future__ import annotations

import asyncio

from meshplate_core.events import SampleTaskRequested
from worker.kinds import JobKind


def sample_result(message: str) -> str:
    """What the sample task answers."""
    return f"Task {message} is complete!"


def sample_task(*, work_s: float) -> JobKind[SampleTaskRequested]:
    """The kind: `work_s` of pretend work (the boilerplate sleeps 5 s), then the answer."""

    async def run(task: SampleTaskRequested) -> str:
        await asyncio.sleep(work_s)
        return sample_result(task.message)

    return JobKind(
        name="sample-task",
        model=SampleTaskRequested,
        run=run,
        job_id=lambda task: task.task_id,
        owner_id=lambda task: task.owner_id,
    )
