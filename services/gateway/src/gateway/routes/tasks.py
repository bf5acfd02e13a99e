"""Task routes (docs/api.md "Tasks"): enqueue the sample task, read a job's status."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel

from gateway.deps import AppRedis, AppSettings, OptionalUser
from gateway.documented import errors
from meshplate_core.errors import NotFoundError, UnavailableError
from meshplate_core.events import SampleTaskRequested
from meshplate_core.jobs import Job, JobStore, Status
from meshplate_core.redis_client import REDIS_FAILURES
from meshplate_core.tokens import Claims

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])


class TaskCreated(BaseModel):
    """The id to ask about a job."""

    id: str


class TaskRead(BaseModel):
    """A job's status."""

    id: str
    status: Status
    result: str | None
    error: str | None
    attempts: int
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@router.post("/task", status_code=status.HTTP_201_CREATED)
async def create_task(
    message: Annotated[str, Query(min_length=1, max_length=1000)],
    user: OptionalUser,
    redis: AppRedis,
    settings: AppSettings,
) -> TaskCreated:
    """Enqueue the sample task."""
    job_id = uuid.uuid4().hex
    owner = user.user_id if user is not None else None
    event = SampleTaskRequested(task_id=job_id, message=message, owner_id=owner)
    try:
        await JobStore(redis, ttl_s=settings.job_ttl_s).enqueue(job_id, event, owner_id=owner)
    except REDIS_FAILURES:
        raise UnavailableError("Queue is not available") from None
    return TaskCreated(id=job_id)


@router.get("/task/{task_id}", responses=errors(404))
async def read_task(
    task_id: str, user: OptionalUser, redis: AppRedis, settings: AppSettings, response: Response
) -> TaskRead:
    """A job's status: a job enqueued by a user is visible to that user or a superuser only."""
    # A status changes within seconds: no shared cache may keep it.
    response.headers["Cache-Control"] = "private, no-cache"
    try:
        job = await JobStore(redis, ttl_s=settings.job_ttl_s).get(task_id)
    except REDIS_FAILURES:
        raise UnavailableError("Queue is not available") from None
    if job is None or not _visible(job, user):
        raise NotFoundError("Task not found")
    return TaskRead(**job.model_dump(exclude={"owner_id", "system"}))


def _visible(job: Job, user: Claims | None) -> bool:
    """Anyone's job to anyone, a user's to that user, the system's (cleanup, reports) to
    superusers; superusers see everything."""
    if user is not None and user.is_superuser:
        return True
    if job.system:
        return False
    return job.owner_id is None or (user is not None and user.user_id == job.owner_id)
