"""The password hasher's bounds: a few checks at a time, a short queue, the rest refused at once."""

from __future__ import annotations

import asyncio

import pytest

from meshplate_core.errors import ResourceExhaustedError
from users.passwords import PasswordHasher


def _hasher(*, concurrency: int, queue_limit: int) -> PasswordHasher:
    # The production cost: each check takes about 0.1 s, long enough for the bursts below to
    # arrive while the first ones still run.
    return PasswordHasher(
        time_cost=3,
        memory_cost_kib=65536,
        parallelism=4,
        concurrency=concurrency,
        queue_limit=queue_limit,
    )


async def test_a_burst_beyond_the_queue_is_refused_at_once() -> None:
    hasher = _hasher(concurrency=1, queue_limit=2)
    stored = await hasher.hash("correct horse")

    answers = await asyncio.gather(
        *(hasher.verify("correct horse", stored) for _ in range(10)), return_exceptions=True
    )

    # One runs, two wait, seven are told to come back.
    assert answers[:3] == [(True, None)] * 3
    assert all(isinstance(a, ResourceExhaustedError) for a in answers[3:])
    assert str(answers[3]) == "Too many password checks at once; try again shortly."
    assert isinstance(answers[3], ResourceExhaustedError)
    assert answers[3].retry_after_s == 1


async def test_a_caller_gone_while_waiting_frees_its_place_and_costs_nothing() -> None:
    hasher = _hasher(concurrency=1, queue_limit=1)
    stored = await hasher.hash("correct horse")
    running = asyncio.create_task(hasher.verify("correct horse", stored))
    waiting = asyncio.create_task(hasher.verify("correct horse", stored))
    await asyncio.sleep(0)
    with pytest.raises(ResourceExhaustedError):
        await hasher.verify("correct horse", stored)

    waiting.cancel()
    await asyncio.sleep(0)
    again = await hasher.verify("correct horse", stored)

    assert again == (True, None)
    assert await running == (True, None)
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_caller_gone_while_its_check_runs_keeps_the_slot_until_it_is_done() -> None:
    hasher = _hasher(concurrency=1, queue_limit=0)
    stored = await hasher.hash("correct horse")
    abandoned = asyncio.create_task(hasher.verify("correct horse", stored))
    await asyncio.sleep(0.01)  # in its thread now
    abandoned.cancel()
    await asyncio.sleep(0)

    # The cores are still busy with it: the next check is refused, not started beside it.
    with pytest.raises(ResourceExhaustedError):
        await hasher.verify("correct horse", stored)
    async with asyncio.timeout(5):
        while True:
            try:
                assert await hasher.verify("correct horse", stored) == (True, None)
                break
            except ResourceExhaustedError:
                await asyncio.sleep(0.01)
