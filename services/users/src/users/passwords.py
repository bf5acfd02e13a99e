"""Password hashing: argon2id for new hashes, bcrypt still verified, all of it off the event loop."""

from __future__ import annotations

import asyncio

from passlib.context import CryptContext


class PasswordHasher:
    """Hashes and verifies passwords in worker threads, so a burst of them never stalls the loop."""

    def __init__(self, *, time_cost: int, memory_cost_kib: int, parallelism: int) -> None:
        self._context = CryptContext(
            schemes=["argon2", "bcrypt"],
            deprecated=["bcrypt"],
            argon2__type="ID",
            argon2__time_cost=time_cost,
            argon2__memory_cost=memory_cost_kib,
            argon2__parallelism=parallelism,
        )

    async def hash(self, password: str) -> str:
        """A new argon2id hash of `password`."""
        return await asyncio.to_thread(self._context.hash, password)
