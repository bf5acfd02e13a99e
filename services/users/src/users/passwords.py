"""Password hashing: argon2id for new hashes, bcrypt still verified, all of it off the event loop,
a few at a time."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from passlib.context import CryptContext

from meshplate_core.errors import ResourceExhaustedError

T = TypeVar("T")


class PasswordHasher:
    """Hashes and verifies passwords in worker threads, so a burst of them never stalls the loop.

    At most `concurrency` run at once (more would only share the same cores) and at most
    `queue_limit` wait; a check beyond that is refused at once (ResourceExhaustedError, retry
    after a second) rather than queued past its caller's deadline. A caller that gives up while
    waiting costs nothing; one that gives up while its check runs keeps the slot until the check
    is done, so abandoned work never piles up on the cores.

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
        queue_limit: int,
    ) -> None:
        self._context = CryptContext(
            schemes=["argon2", "bcrypt"],
            deprecated=["bcrypt"],
            argon2__type="ID",
            argon2__time_cost=time_cost,
            argon2__memory_cost=memory_cost_kib,
            argon2__parallelism=parallelism,
        )
        self._dummy: str | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._queue_limit = queue_limit
        self._waiting = 0
        self._running: set[asyncio.Task[Any]] = set()

    async def hash(self, password: str) -> str:
        """A new argon2id hash of `password`."""
        return await self._off_loop(self._context.hash, password)

    async def verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """Whether `password` matches; and a new hash when the stored one is outdated
        (bcrypt, or argon2 with other parameters)."""
        ok, new_hash = await self._off_loop(self._context.verify_and_update, password, hashed)
        return bool(ok), new_hash

    async def waste(self, password: str) -> None:
        """Spend the work of one verification, for a user that does not exist."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(16))
        await self._off_loop(self._context.verify, password, self._dummy)

    async def _off_loop(self, work: Callable[..., T], *args: str) -> T:
        if self._slots.locked() and self._waiting >= self._queue_limit:
            raise ResourceExhaustedError(
                "Too many password checks at once; try again shortly.", retry_after_s=1
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        task: asyncio.Task[T] = asyncio.create_task(asyncio.to_thread(work, *args))
        self._running.add(task)
        task.add_done_callback(self._done)
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        self._slots.release()
