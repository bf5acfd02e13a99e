"""The worker's jobs: one handler per event, named for its effect.

Every process is its own consumer (`<host>-<pid>`: the pod name in Kubernetes) in one consumer
group per stream, so replicas share the work. The group is created at the stream's start (`0`), so
jobs published before any worker ever ran are not skipped.
"""

from __future__ import annotations

import os
import socket

from faststream import Context
from faststream.redis import RedisRouter, StreamSub

from meshplate_core.events import SampleTaskRequested
from meshplate_core.jobs import JobStore

GROUP = "worker"
# Read once at import: the subscriber decorators run before any settings exist.
CONSUMER = f"{socket.gethostname()}-{os.getpid()}"

router = RedisRouter()


@router.subscriber(
    stream=StreamSub(SampleTaskRequested.STREAM, group=GROUP, consumer=CONSUMER, last_id="0")
)
async def run_sample_task(task: SampleTaskRequested, jobs: JobStore = Context()) -> str:
    """The boilerplate's sample task; its record goes running -> succeeded with the result."""
    await jobs.started(task.task_id)
    result = sample_result(task.message)
    await jobs.succeeded(task.task_id, result)
    return result


def sample_result(message: str) -> str:
    """What the sample task answers."""
    return f"Task {message} is complete!"
