from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from meshplate_core.batching import Batcher


class Recorder:
    """A `send` that records its batches and answers each item doubled, after a gate opens."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await self.gate.wait()
        return [item * 2 for item in items]


async def test_calls_made_together_go_out_in_one_batch() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.send)

    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))

    assert results == [0, 2, 4, 6, 8]
    assert recorder.batches == [[0, 1, 2, 3, 4]]


async def test_calls_made_while_a_batch_is_in_flight_share_the_next_one() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = Batcher(recorder.send)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.01)
    later = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0.01)

    recorder.gate.set()

    assert await first == 2
    assert [await call for call in later] == [4, 6, 8]
    assert recorder.batches == [[1], [2, 3, 4]]


async def test_batches_are_capped_in_size() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.send, max_batch=2, in_flight=3)

    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))

    assert results == [0, 2, 4, 6, 8]
    assert recorder.batches == [[0, 1], [2, 3], [4]]


async def test_a_failed_batch_fails_each_of_its_callers() -> None:
    async def send(items: Sequence[int]) -> list[int]:
        raise ConnectionError("down")

    batcher: Batcher[int, int] = Batcher(send)

    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)

    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)


async def test_a_caller_that_gives_up_does_not_disturb_the_others() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = Batcher(recorder.send)
    impatient = asyncio.ensure_future(batcher.submit(1))
    patient = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0.01)

    impatient.cancel()
    recorder.gate.set()

    assert await patient == 4
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_a_wrong_number_of_results_fails_the_batch() -> None:
    async def send(items: Sequence[int]) -> list[int]:
        return [1]

    batcher: Batcher[int, int] = Batcher(send)

    outcomes = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)

    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)


async def test_a_busy_batcher_lingers_so_the_next_batch_carries_what_came_meanwhile() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.send, linger_s=0.2)

    assert await batcher.submit(1) == 2  # idle: sent at once
    # Within the window of that launch, one after the other: they wait for it to end.
    later = []
    for i in (2, 3, 4):
        later.append(asyncio.ensure_future(batcher.submit(i)))
        await asyncio.sleep(0.01)
    assert recorder.batches == [[1]]

    assert [await call for call in later] == [4, 6, 8]
    assert recorder.batches == [[1], [2, 3, 4]]


async def test_a_call_that_finds_the_batcher_idle_past_its_window_waits_for_nothing() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.send, linger_s=0.05)
    await batcher.submit(1)
    await asyncio.sleep(0.1)

    call = asyncio.ensure_future(batcher.submit(2))
    for _ in range(3):  # the call, its launch, the batch's task: turns of the loop, no timer
        await asyncio.sleep(0)

    assert recorder.batches == [[1], [2]]
    assert await call == 4
