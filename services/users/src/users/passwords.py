"""Password hashing: argon2id for new hashes, older hashes still verified and upgraded, all of it
off the event loop, in low-priority threads, a few at a time."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from passlib.context import CryptContext

from meshplate_core.errors import ResourceExhaustedError

T = TypeVar("T")

log = logging.getLogger(__name__)

# How much of its caller's remaining deadline a check may expect to spend waiting and hashing:
# the rest is for the caller's own work after it and for the machine getting slower once the
# check is admitted (a quarter refused some of 16 logins at once on a busy 2-core machine).
SHARE_OF_DEADLINE = 0.5
# How much of its caller's time a check keeps for its answer to travel back: a check still
# waiting for its turn too close to it, or still running when only this share is left, is
# answered with a refusal instead (a running hash goes on in its slot), so neither a queue
# behind starved hashes nor a starved hash itself runs its caller into the deadline.
ANSWER_RESERVE = 0.25
# Weight of the newest hash time in the running estimate.
_SMOOTHING = 0.2


def _lower_priority(nice: int, idle: bool) -> None:
    # Linux schedules threads, and their policy and niceness are their own: lowering this one's
    # lets the event loop (reads) preempt hashing. Elsewhere PRIO_PROCESS would mean the whole
    # process. SCHED_IDLE: the thread runs on CPU time no other thread wants, and a waking
    # thread of any other policy preempts it at once (niceness only weighs the shares).
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    try:
        if idle:
            os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
        elif nice:
            os.setpriority(os.PRIO_PROCESS, thread, nice)
    except OSError as exc:
        log.warning("password hashing keeps its CPU priority: %s", exc)


def _timed(work: Callable[..., T], *args: str) -> tuple[T, float]:
    started = time.perf_counter()
    result = work(*args)
    return result, time.perf_counter() - started


class PasswordHasher:
    """Hashes and verifies passwords in worker threads, so a burst of them never stalls the loop.

    At most `concurrency` run at once (more would only share the same cores), in threads of
    Linux's SCHED_IDLE policy when `idle`, else of niceness `nice`, so that on a busy machine
    reads are served before hashes (argon2 releases the GIL: the threads hash in parallel). A
    check waits for its turn only when it can be done within SHARE_OF_DEADLINE of its caller's
    remaining time (`time_left_s`, else `default_deadline_s`), judged from the number of checks
    ahead of it, the concurrency and a running average of the measured hash time; otherwise it
    is refused at once
    (ResourceExhaustedError, retry after about the time the checks ahead need) rather than
    queued past its caller's deadline. It is judged again while it waits and when its turn
    comes: once the machine got so slow that it could no longer be done in time, it is refused
    rather than hashed for a caller who will be gone. ANSWER_RESERVE of the caller's time is
    kept for the answer to travel back, and these judgements are made against what is left
    before it: a check still waiting when its hash could no longer end before it, or still
    running when it begins (its thread starved by busier ones), is refused then, so the caller
    hears "too busy" (429) rather than running into its deadline (504).
    A caller that gives up while waiting costs nothing; one that gives up while its check runs
    keeps the slot until the check is done, so abandoned work never piles up on the cores.

    A check for a user that does not exist verifies against a dummy hash made with the current
    parameters, so it costs the same as a check for one that does.
    """

    def __init__(
        self,
        *,
        time_cost: int,
        memory_cost_kib: int,
        parallelism: int,
        concurrency: int,
        nice: int,
        idle: bool = False,
        default_deadline_s: float,
    ) -> None:
        self._context = CryptContext(
            schemes=["argon2", "bcrypt"],
            deprecated=["bcrypt"],
            argon2__type="ID",
            argon2__time_cost=time_cost,
            argon2__memory_cost=memory_cost_kib,
            argon2__parallelism=parallelism,
        )
        # Made here, so the first unknown user costs no more than the next, and timed, so the
        # first burst is judged on a real figure.
        self._dummy, self._seconds_per_hash = _timed(self._context.hash, secrets.token_urlsafe(16))
        self._concurrency = concurrency
        self._default_deadline_s = default_deadline_s
        self._threads = ThreadPoolExecutor(
            max_workers=concurrency,
            thread_name_prefix="password",
            initializer=_lower_priority,
            initargs=(nice, idle),
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._waiting = 0
        self._running: set[asyncio.Future[Any]] = set()

    @property
    def seconds_per_hash(self) -> float:
        """The running estimate of one hash's wall time in its thread, which admission uses."""
        return self._seconds_per_hash

    def check_room(self, time_left_s: float | None = None) -> None:
        """Refuse now (ResourceExhaustedError) a check that could not be done in time, before
        the caller does any work of its own for it; the check itself is judged again."""
        self._admit(self._default_deadline_s if time_left_s is None else time_left_s)

    async def hash(self, password: str, *, time_left_s: float | None = None) -> str:
        """A new argon2id hash of `password`."""
        return await self._off_loop(time_left_s, self._context.hash, password)

    async def verify(
        self, password: str, hashed: str, *, time_left_s: float | None = None
    ) -> tuple[bool, str | None]:
        """Whether `password` matches; and a new hash when the stored one is outdated
        (bcrypt, or argon2 with other parameters)."""
        ok, new_hash = await self._off_loop(
            time_left_s, self._context.verify_and_update, password, hashed
        )
        return bool(ok), new_hash

    async def waste(self, password: str, *, time_left_s: float | None = None) -> None:
        """Spend the work of one verification, for a user that does not exist."""
        await self._off_loop(time_left_s, self._context.verify_and_update, password, self._dummy)

    def close(self) -> None:
        """Let the threads end once the checks still running are done."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _off_loop(self, time_left_s: float | None, work: Callable[..., T], *args: str) -> T:
        if time_left_s is None:
            time_left_s = self._default_deadline_s
        self._admit(time_left_s)
        loop = asyncio.get_running_loop()
        # When the answer must be ready, to reach the caller in time.
        answer_by = loop.time() + time_left_s * (1 - ANSWER_RESERVE)
        self._waiting += 1
        try:
            # The machine may get slower while this check waits: once it could no longer be
            # done in time, it is refused rather than left to run into its caller's deadline.
            async with asyncio.timeout_at(answer_by - self._seconds_per_hash / SHARE_OF_DEADLINE):
                await self._slots.acquire()
        except TimeoutError:
            raise self._refusal(ahead=0) from None
        finally:
            self._waiting -= 1
        try:
            self._admit(answer_by - loop.time(), ahead=0)
        except ResourceExhaustedError:
            self._slots.release()
            raise
        running = loop.run_in_executor(self._threads, _timed, work, *args)
        self._running.add(running)
        running.add_done_callback(self._done)
        try:
            async with asyncio.timeout_at(answer_by):
                result, _seconds = await asyncio.shield(running)
        except TimeoutError:
            raise self._refusal(ahead=self._in_line) from None
        return result

    @property
    def _in_line(self) -> int:
        # The checks waiting for a thread or hashing in one.
        return self._waiting + len(self._running)

    def _admit(self, time_left_s: float, *, ahead: int | None = None) -> None:
        if ahead is None:
            ahead = self._in_line
        rounds = ahead // self._concurrency + 1
        if rounds * self._seconds_per_hash > time_left_s * SHARE_OF_DEADLINE:
            raise self._refusal(ahead=ahead)

    def _refusal(self, *, ahead: int) -> ResourceExhaustedError:
        # Come back once the checks ahead are done.
        wait_s = ahead // self._concurrency * self._seconds_per_hash
        return ResourceExhaustedError(
            "Too many password checks at once; try again shortly.",
            retry_after_s=max(1, math.ceil(wait_s)),
        )

    def _done(self, running: asyncio.Future[tuple[Any, float]]) -> None:
        self._running.discard(running)
        self._slots.release()
        if not running.cancelled() and running.exception() is None:
            _result, seconds = running.result()
            self._seconds_per_hash += _SMOOTHING * (seconds - self._seconds_per_hash)
