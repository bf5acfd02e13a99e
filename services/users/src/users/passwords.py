"""Password hashing: argon2id for new hashes, bcrypt still verified, all of it off the event loop."""

from __future__ import annotations

import asyncio
import secrets

from passlib.context import CryptContext


class PasswordHasher:
    """Hashes and verifies passwords in worker threads, so a burst of them never stalls the loop.

    A check for a user that does not exist verifies against a dummy hash made with the current
    parameters, so it costs the same as a check for one that does.
    """

    def __init__(self, *, time_cost: int, memory_cost_kib: int, parallelism: int) -> None:
        self._context = CryptContext(
            schemes=["argon2", "bcrypt"],
            deprecated=["bcrypt"],
            argon2__type="ID",
            argon2__time_cost=time_cost,
            argon2__memory_cost=memory_cost_kib,
            argon2__parallelism=parallelism,
        )
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        """A new argon2id hash of `password`."""
        return await asyncio.to_thread(self._context.hash, password)

    async def verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """Whether `password` matches; and a new hash when the stored one is outdated
        (bcrypt, or argon2 with other parameters)."""
        ok, new_hash = await asyncio.to_thread(self._context.verify_and_update, password, hashed)
        return bool(ok), new_hash

    async def waste(self, password: str) -> None:
        """Spend the work of one verification, for a user that does not exist."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(16))
        await asyncio.to_thread(self._context.verify, password, self._dummy)
