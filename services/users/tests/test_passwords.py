"""The password hasher: OWASP's argon2id cost, outdated hashes upgraded, low-priority threads, and
checks admitted only when they can be done within their caller's deadline."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest
from passlib.hash import argon2, bcrypt

from meshplate_core.errors import ResourceExhaustedError
from users.passwords import ANSWER_RESERVE, SHARE_OF_DEADLINE, PasswordHasher

CURRENT = "$argon2id$v=19$m=7168,t=5,p=1$"
# A bcrypt hash (of "x") far dearer to verify than the estimate of an argon2 hash (about 1 s
# against 15-20 ms), as a hash starved of CPU time would be; made once, not on the test's loop.
STARVED = "$2b$14$98qqMxqpNxdOujtqDA9sm./PsnMqbLnHtsXc6vVB44ID9G8X21J8G"


def _hasher(*, concurrency: int = 1, nice: int = 10, idle: bool = False) -> PasswordHasher:
    # The production cost.
    return PasswordHasher(
        time_cost=5,
        memory_cost_kib=7168,
        parallelism=1,
        concurrency=concurrency,
        nice=nice,
        idle=idle,
        default_deadline_s=5.0,
    )


async def _hashing_threads(hasher: PasswordHasher) -> list[int]:
    # The native ids of the threads that hashed two passwords at once.
    before = set(threading.enumerate())
    await asyncio.gather(hasher.hash("a"), hasher.hash("b"))
    threads = [t for t in set(threading.enumerate()) - before if t.name.startswith("password")]
    assert threads
    return [t.native_id or 0 for t in threads]


def _room_for(hasher: PasswordHasher, checks: float) -> float:
    # A caller's time in which `checks` checks one after the other fit, and one more does not.
    return (checks + 0.5) * hasher.seconds_per_hash / SHARE_OF_DEADLINE


async def test_new_hashes_use_the_configured_argon2id_parameters() -> None:
    hasher = _hasher()

    stored = await hasher.hash("correct horse")

    assert stored.startswith(CURRENT)
    assert await hasher.verify("correct horse", stored) == (True, None)


async def test_a_hash_with_older_parameters_is_replaced_on_a_good_password_only() -> None:
    hasher = _hasher()
    old = argon2.using(type="ID", memory_cost=65536, rounds=3, parallelism=4).hash("correct horse")

    wrong = await hasher.verify("wrong horse", old)
    ok, new_hash = await hasher.verify("correct horse", old)

    assert wrong == (False, None)
    assert ok
    assert new_hash is not None
    assert new_hash.startswith(CURRENT)
    assert await hasher.verify("correct horse", new_hash) == (True, None)


@pytest.mark.skipif(sys.platform != "linux", reason="niceness is per thread on Linux only")
async def test_hashing_threads_run_at_a_lower_cpu_priority() -> None:
    hasher = _hasher(concurrency=2, nice=7)

    threads = await _hashing_threads(hasher)

    assert {os.getpriority(os.PRIO_PROCESS, thread) for thread in threads} == {7}
    assert {os.sched_getscheduler(thread) for thread in threads} == {os.SCHED_OTHER}
    assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER
    hasher.close()


@pytest.mark.skipif(sys.platform != "linux", reason="SCHED_IDLE is Linux's")
async def test_hashing_threads_can_run_only_on_idle_cpu_time() -> None:
    hasher = _hasher(concurrency=2, idle=True)

    threads = await _hashing_threads(hasher)

    assert {os.sched_getscheduler(thread) for thread in threads} == {os.SCHED_IDLE}
    assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER
    hasher.close()


async def test_a_check_that_cannot_be_done_within_its_callers_time_is_refused_at_once() -> None:
    hasher = _hasher()
    stored = await hasher.hash("correct horse")

    with pytest.raises(ResourceExhaustedError) as refused:
        await hasher.verify("correct horse", stored, time_left_s=0)

    assert str(refused.value) == "Too many password checks at once; try again shortly."
    assert refused.value.retry_after_s >= 1


async def test_a_burst_gets_what_fits_its_deadline_in_order_and_the_rest_is_refused() -> None:
    hasher = _hasher()
    stored = await hasher.hash("correct horse")
    time_left_s = _room_for(hasher, 8)

    answers = await asyncio.gather(
        *(hasher.verify("correct horse", stored, time_left_s=time_left_s) for _ in range(64)),
        return_exceptions=True,
    )

    done = [a for a in answers if a == (True, None)]
    refused = [a for a in answers if isinstance(a, ResourceExhaustedError)]
    assert done
    assert refused
    assert answers == done + refused
    assert all(r.retry_after_s >= 1 for r in refused)


async def test_a_check_made_late_by_the_checks_ahead_of_it_is_refused() -> None:
    hasher = _hasher()
    stored = await hasher.hash("correct horse")
    # Far dearer than the estimate of a hash, so the check behind it is admitted, then late.
    slow = asyncio.create_task(hasher.verify("correct horse", bcrypt.using(rounds=12).hash("x")))
    await asyncio.sleep(0)

    late = hasher.verify("correct horse", stored, time_left_s=_room_for(hasher, 1.6))

    with pytest.raises(ResourceExhaustedError):
        await late
    assert await slow == (False, None)


def _answered_with_time_to_spare(time_left_s: float) -> asyncio.Timeout:
    # Half of the time kept for the answer to travel back must still be left.
    return asyncio.timeout(time_left_s * (1 - ANSWER_RESERVE / 2))


async def test_a_check_still_running_near_its_callers_deadline_is_refused_in_time() -> None:
    hasher = _hasher()
    stored = await hasher.hash("correct horse")
    estimate = hasher.seconds_per_hash
    # Admitted, then still running when its caller's time is nearly out.
    time_left_s = _room_for(hasher, 16)

    async with _answered_with_time_to_spare(time_left_s):
        with pytest.raises(ResourceExhaustedError) as refused:
            await hasher.verify("correct horse", STARVED, time_left_s=time_left_s)

    assert refused.value.retry_after_s >= 1
    # The hash goes on in its slot: the next check is refused, not started beside it; once the
    # hash is done, the estimate has learnt from it.
    with pytest.raises(ResourceExhaustedError):
        await hasher.verify("correct horse", stored, time_left_s=_room_for(hasher, 1))
    async with asyncio.timeout(10):
        while hasher.seconds_per_hash == estimate:
            await asyncio.sleep(0.01)
    assert hasher.seconds_per_hash > estimate
    hasher.close()


async def test_a_check_waiting_behind_a_starved_one_is_refused_in_time() -> None:
    hasher = _hasher()
    stored = await hasher.hash("correct horse")
    starved = asyncio.create_task(hasher.verify("correct horse", STARVED, time_left_s=60))
    await asyncio.sleep(0)  # in its thread now
    time_left_s = _room_for(hasher, 15)

    async with _answered_with_time_to_spare(time_left_s):
        with pytest.raises(ResourceExhaustedError):
            await hasher.verify("correct horse", stored, time_left_s=time_left_s)

    assert await starved == (False, None)
    hasher.close()


async def test_a_caller_gone_while_waiting_frees_its_place_and_costs_nothing() -> None:
    hasher = _hasher()
    stored = await hasher.hash("correct horse")
    running = asyncio.create_task(hasher.verify("correct horse", stored))
    waiting = asyncio.create_task(hasher.verify("correct horse", stored))
    await asyncio.sleep(0)
    with pytest.raises(ResourceExhaustedError):
        await hasher.verify("correct horse", stored, time_left_s=_room_for(hasher, 2))

    waiting.cancel()
    await asyncio.sleep(0)
    again = await hasher.verify("correct horse", stored, time_left_s=_room_for(hasher, 2))

    assert again == (True, None)
    assert await running == (True, None)
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_caller_gone_while_its_check_runs_keeps_the_slot_until_it_is_done() -> None:
    hasher = _hasher()
    stored = await hasher.hash("correct horse")
    abandoned = asyncio.create_task(hasher.verify("correct horse", stored))
    await asyncio.sleep(0)  # in its thread now
    abandoned.cancel()
    await asyncio.sleep(0)

    # The core is still busy with it: the next check is refused, not started beside it.
    with pytest.raises(ResourceExhaustedError):
        await hasher.verify("correct horse", stored, time_left_s=_room_for(hasher, 1))
    async with asyncio.timeout(5):
        while True:
            try:
                answer = await hasher.verify(
                    "correct horse", stored, time_left_s=_room_for(hasher, 1)
                )
                break
            except ResourceExhaustedError:
                await asyncio.sleep(0.01)
    assert answer == (True, None)
    with pytest.raises(asyncio.CancelledError):
        await abandoned
