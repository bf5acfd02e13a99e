"""Jobs in the panel: the newest jobs with their status, attempts and error (the job records the
gateway already reads for `GET /api/v1/tasks/task/{id}`), and the dead letters of every job kind,
each of which can be replayed: its job runs again from scratch, once (meshplate_core.dead_letters,
as `python -m worker replay` does it)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette_admin import (
    BooleanField,
    DateTimeField,
    IntegerField,
    StringField,
    TextAreaField,
    row_action,
)
from starlette_admin.exceptions import ActionFailed

from gateway.admin.problems import succeeded
from gateway.admin.views.remote import FormlessView
from gateway.settings import Settings
from meshplate_core.dead_letters import DeadEntry, find_dead, list_dead, replay
from meshplate_core.jobs import JobStore
from meshplate_core.redis_client import REDIS_FAILURES

_ENTRY_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
# Dead letters read per kind at most (replay leaves what it replays; what is beyond stays there).
_DEAD_READ = 1000


def _jobs(request: Request) -> JobStore:
    settings: Settings = request.state.settings
    return JobStore(request.state.redis, ttl_s=settings.job_ttl_s)


class _ReadOnly(FormlessView):
    """A view that only lists and shows."""

    def can_delete(self, request: Request) -> bool:
        return False


class JobsView(_ReadOnly):
    """The newest jobs, newest first."""

    key = "jobs"
    menu_label = "Jobs"
    icon = "fa fa-list-check"
    pk_attr = "id"
    fields = (
        StringField("id", label="Id"),
        StringField("status"),
        IntegerField("attempts"),
        TextAreaField("error", exclude_from_list=True),
        TextAreaField("result", exclude_from_list=True),
        DateTimeField("enqueued_at", label="Enqueued"),
        DateTimeField("started_at", label="Started", exclude_from_list=True),
        DateTimeField("finished_at", label="Finished"),
        IntegerField("owner_id", label="Owner"),
        BooleanField("system"),
    )
    row_actions = ("view",)

    async def page(
        self, request: Request, number: int, size: int, q: str | None
    ) -> tuple[Sequence[Any], int]:
        return await _jobs(request).recent((number - 1) * size, size)

    async def record(self, request: Request, pk: Any) -> Any:
        return await _jobs(request).get(str(pk))


@dataclass(frozen=True)
class DeadRow:
    """A dead letter; `key` names it with its kind (`<kind>:<entry id>`)."""

    key: str
    kind: str
    job_id: str
    attempts: int
    error: str
    at: str

    def __admin_repr__(self, request: Request) -> str:
        return self.job_id


def _row(kind: str, entry: DeadEntry) -> DeadRow:
    return DeadRow(
        f"{kind}:{entry.entry_id}", kind, entry.job_id, entry.attempts, entry.error, entry.at
    )


class DeadLettersView(_ReadOnly):
    """Every kind's dead letters, oldest first; replay one to run its job again."""

    key = "dead-letters"
    menu_label = "Dead letters"
    icon = "fa fa-skull-crossbones"
    pk_attr = "key"
    fields = (
        StringField("kind"),
        StringField("job_id", label="Job"),
        IntegerField("attempts"),
        TextAreaField("error"),
        StringField("at", label="Dead since"),
    )
    row_actions = ("view", "replay")

    async def page(
        self, request: Request, number: int, size: int, q: str | None
    ) -> tuple[Sequence[Any], int]:
        store = _jobs(request)
        rows: list[DeadRow] = []
        for kind in await store.kinds():
            rows += [_row(kind, entry) for entry in await list_dead(store, kind, count=_DEAD_READ)]
        return rows[(number - 1) * size : number * size], len(rows)

    async def record(self, request: Request, pk: Any) -> Any:
        kind, _, entry_id = str(pk).partition(":")
        if not _ENTRY_ID.fullmatch(entry_id):
            return None
        entry = await find_dead(_jobs(request), kind, entry_id)
        return None if entry is None else _row(kind, entry)

    @row_action(
        name="replay",
        text="Replay",
        confirmation="Run this job again, from scratch?",
        submit_btn_text="Replay",
        icon_class="fa fa-rotate-right",
    )
    async def replay_one(self, request: Request, pk: Any) -> str:
        kind, _, entry_id = str(pk).partition(":")
        if not _ENTRY_ID.fullmatch(entry_id):
            raise ActionFailed("No such dead letter.")
        try:
            replayed = await replay(_jobs(request), kind, [entry_id])
        except REDIS_FAILURES:
            raise ActionFailed("The job queue is not available; try again.") from None
        if not replayed:
            raise ActionFailed("This dead letter was replayed already.")
        return succeeded(request, "Job replayed: it runs again.")
