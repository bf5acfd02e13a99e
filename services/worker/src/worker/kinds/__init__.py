"""The worker's job kinds, one module each, and what a kind is.

A kind names the stream it reads (its event model's STREAM), its consumer group (so each kind sees
every entry of its stream, and the worker processes share each kind's entries) and its dead-letter
stream; `run` does the work and returns the result shown on the job's record, and raises to fail
the attempt (a PermanentError: never try again).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from meshplate_core.dead_letters import dead_stream
from meshplate_core.events import JOBS_TAG, Event

E = TypeVar("E", bound=Event)


class PermanentError(Exception):
    """The job can never succeed as it is (a refused address, a malformed request): it goes to
    the dead-letter stream at once instead of being retried."""


@dataclass(frozen=True)
class JobKind(Generic[E]):
    """One kind of job.

    `job_id` names the record (the task id for API tasks, the kind and event id otherwise), so a
    redelivered event finds its record and is not run again; `owner_id` is who may read it.
    """

    name: str
    model: type[E]
    run: Callable[[E], Awaitable[str]]
    job_id: Callable[[E], str]
    owner_id: Callable[[E], int | None] = lambda _event: None
    # The system's own jobs: records readable by superusers only.
    system: bool = False

    def __post_init__(self) -> None:
        if not self.model.STREAM.startswith(JOBS_TAG):
            # Its scripts could not move a record and its entry together on a Redis Cluster.
            raise ValueError(f"the stream of job kind {self.name} must start with {JOBS_TAG}")

    @property
    def stream(self) -> str:
        """The stream its events arrive on."""
        return self.model.STREAM

    @property
    def dead_stream(self) -> str:
        """Where its dead jobs go, with their error."""
        return dead_stream(self.name)
