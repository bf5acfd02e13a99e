"""The payloads of Meshplate's Redis streams: one model per event, shared by publisher and consumer.

Each event names its stream in `STREAM` (`<domain>.<event>`), so a publisher and the worker can
never disagree on where it goes. The streams the worker consumes carry the job system's hash tag
(`JOBS_TAG`): the worker's scripts move a job's record and its stream entries together, and on a
Redis Cluster a script's keys must share a slot. `event_id` makes handling idempotent: a consumer
that sees an id twice (at-least-once delivery) does the work once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

# The hash tag of every key of the job system: the streams the worker consumes, their
# dead-letter streams and the job records (meshplate_core.jobs). One slot on a Redis Cluster.
JOBS_TAG = "{jobs}"


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

    STREAM: ClassVar[str] = f"{JOBS_TAG}:tasks.sample"

    task_id: str
    message: str
    # Who enqueued it (None: an anonymous caller).
    owner_id: int | None = None


class UserRegistered(Event):
    """A user signed up (published by users after the commit)."""

    STREAM: ClassVar[str] = f"{JOBS_TAG}:users.registered"

    user_id: int
    username: str
    name: str
    email: str


class UserDeleted(Event):
    """A user was deleted: soft (`hard` false) or with their rows (`hard` true)."""

    STREAM: ClassVar[str] = "users.deleted"

    user_id: int
    hard: bool


class UserTierChanged(Event):
    """A user moved to another tier (`tier_id` None: no tier)."""

    STREAM: ClassVar[str] = "users.tier_changed"

    user_id: int
    tier_id: int | None


class UserRightsChanged(Event):
    """A user was made a superuser, or stopped being one (auth revokes their tokens, which carry
    the old rights)."""

    STREAM: ClassVar[str] = "users.rights_changed"

    user_id: int
    is_superuser: bool


class TokensRevoked(Event):
    """Tokens stopped being valid before their expiry (published by auth on `auth.revocations`).

    Exactly one of: one token (`token_id`), every token of one login (`family_id`), or every
    token of `user_id` issued before `issued_before`. `expires_at` is when the last token it
    names expires anyway; the stream keeps entries for one access-token lifetime, so older ones
    only name tokens that have expired.
    """

    STREAM: ClassVar[str] = "auth.revocations"

    user_id: int
    token_id: str | None = None
    family_id: str | None = None
    issued_before: datetime | None = None
    expires_at: datetime


class ReadsChanged(Event):
    """What the users service answers may have changed (published by users after each write's
    commit, in the same round trip that invalidates its own cache). Readers that keep copies of
    users' answers (the gateways' read model) drop the copies that depend on any of `keys`.

    Keys name what a read depends on: `user_key(id)` (a user by id), `username_key(name)` (a user
    by username and their pages of posts), `post_key(id)` (one post).
    """

    STREAM: ClassVar[str] = "users.reads_changed"

    keys: list[str]


def user_key(user_id: int) -> str:
    """The key of what a read of user `user_id` by id depends on."""
    return f"user:{user_id}"


def username_key(username: str) -> str:
    """The key of what reads by `username` depend on: the user and their posts."""
    return f"username:{username}"


def post_key(post_id: int) -> str:
    """The key of what a read of post `post_id` depends on."""
    return f"post:{post_id}"
