"""TierStore: tiers in the service's own database (on the caller's connection)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from meshplate_core.database import violated_unique
from users.domain.pages import PageRequest
from users.domain.tiers import Tier, TierInUseError, TierNameTakenError, TierNotFoundError
from users.storage.tables import tier
from users.storage.users import utc


def to_tier(row: Row[Any]) -> Tier:
    """A domain tier from a row of the `tier` table."""
    return Tier(id=row.id, name=row.name, created_at=utc(row.created_at) or row.created_at)


class TierStore:
    """Reads and writes tiers."""

    async def ensure(self, conn: AsyncConnection, name: str) -> Tier:
        """The tier called `name`, created when missing (safe to race)."""
        try:
            return await self.create(conn, name)
        except TierNameTakenError:
            return await self.get_by_name(conn, name)

    async def create(self, conn: AsyncConnection, name: str) -> Tier:
        """A new tier; TierNameTakenError when the name is taken."""
        try:
            async with conn.begin_nested():
                row = (await conn.execute(insert(tier).values(name=name).returning(*tier.c))).one()
        except IntegrityError as exc:
            if violated_unique(exc) == "uq_tier_name":
                raise TierNameTakenError() from None
            raise
        return to_tier(row)

    async def get_by_name(self, conn: AsyncConnection, name: str) -> Tier:
        """The tier with this name."""
        return await self._get_one(conn, tier.c.name == name)

    async def get_by_id(self, conn: AsyncConnection, tier_id: int) -> Tier:
        """The tier with this id."""
        return await self._get_one(conn, tier.c.id == tier_id)

    async def page(self, conn: AsyncConnection, request: PageRequest) -> tuple[list[Tier], int]:
        """One page of tiers by id, and how many there are in all."""
        rows = await conn.execute(
            select(tier).order_by(tier.c.id).offset(request.offset).limit(request.size)
        )
        total = (await conn.execute(select(func.count()).select_from(tier))).scalar_one()
        return [to_tier(row) for row in rows], int(total)

    async def rename(self, conn: AsyncConnection, tier_id: int, name: str) -> Tier:
        """Give a tier another (free) name."""
        statement = update(tier).where(tier.c.id == tier_id).values(name=name).returning(*tier.c)
        try:
            async with conn.begin_nested():
                row = (await conn.execute(statement)).one_or_none()
        except IntegrityError as exc:
            if violated_unique(exc) == "uq_tier_name":
                raise TierNameTakenError() from None
            raise
        if row is None:
            raise TierNotFoundError()
        return to_tier(row)

    async def delete(self, conn: AsyncConnection, tier_id: int) -> None:
        """Remove a tier no user is on; TierInUseError otherwise (the foreign key decides)."""
        try:
            async with conn.begin_nested():
                result = await conn.execute(
                    delete(tier).where(tier.c.id == tier_id).returning(tier.c.id)
                )
        except IntegrityError:
            raise TierInUseError() from None
        if result.first() is None:
            raise TierNotFoundError()

    async def _get_one(self, conn: AsyncConnection, condition: ColumnElement[bool]) -> Tier:
        row = (await conn.execute(select(tier).where(condition))).one_or_none()
        if row is None:
            raise TierNotFoundError()
        return to_tier(row)
