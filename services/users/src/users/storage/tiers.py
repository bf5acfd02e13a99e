"""TierStore: tiers in the service's own database."""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from users.storage.tables import tier


class TierStore:
    """Reads and writes tiers."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def ensure(self, name: str) -> int:
        """The id of the tier called `name`, creating it when missing (safe to race)."""
        find = select(tier.c.id).where(tier.c.name == name)
        async with self._engine.connect() as conn:
            found = (await conn.execute(find)).scalar_one_or_none()
        if found is not None:
            return int(found)
        try:
            async with self._engine.begin() as conn:
                return int(
                    (
                        await conn.execute(insert(tier).values(name=name).returning(tier.c.id))
                    ).scalar_one()
                )
        except IntegrityError:
            async with self._engine.connect() as conn:
                return int((await conn.execute(find)).scalar_one())
