"""A job kind: which stream it reads, which consumer group it is, and what it does per event."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from meshplate_core.events import Event

E = TypeVar("E", bound=Event)


def dead_stream(kind: str) -> str:
    """The dead-letter stream of a job kind."""
    return f"worker.dead.{kind}"


@dataclass(frozen=True)
class JobKind(Generic[E]):
    """One kind of job.

    `name` is its consumer group (so each kind sees every entry of its stream, and the worker
    processes share each kind's entries) and names its dead-letter stream. `run` does the work
    and returns the result shown on the job's record; it raises to fail the attempt.
    `job_id` names the record (the task id for API tasks, the kind and event id otherwise), so a
    redelivered event finds its record and is not run again.
    """

    name: str
    model: type[E]
    run: Callable[[E], Awaitable[str]]
    job_id: Callable[[E], str]
    owner_id: Callable[[E], int | None] = lambda _event: None
    # The system's own jobs: records readable by superusers only.
    system: bool = False

    @property
    def stream(self) -> str:
        """The stream its events arrive on."""
        return self.model.STREAM

    @property
    def dead_stream(self) -> str:
        """Where its dead jobs go, with their error."""
        return dead_stream(self.name)
