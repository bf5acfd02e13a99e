"""The payloads of Meshplate's Redis streams: one model per event, shared by publisher and consumer.

Each event names its stream in `STREAM` (`<domain>.<event>`), so a publisher and the worker can
never disagree on where it goes. `event_id` makes handling idempotent: a consumer that sees an id
twice (at-least-once delivery) does the work once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Common envelope: a unique id and the time the fact happened."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    STREAM: ClassVar[str]

    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    occurred_at: datetime = Field(default_factory=_now)


class SampleTaskRequested(Event):
    """A client asked for the boilerplate's sample task (`POST /api/v1/tasks/task`)."""

    STREAM: ClassVar[str] = "tasks.sample"

    task_id: str
    message: str
