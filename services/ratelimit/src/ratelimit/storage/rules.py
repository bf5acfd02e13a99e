"""RuleStore: rate-limit rules in the service's own database (on the caller's connection)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from meshplate_core.database import violated_unique
from ratelimit.domain import Algorithm, Rule, RuleNotFoundError, RuleTakenError
from ratelimit.storage.tables import rule


def to_rule(row: Row[Any]) -> Rule:
    """A domain rule from a row of the `rule` table."""
    return Rule(
        id=row.id,
        tier_id=row.tier_id,
        name=row.name,
        path=row.path,
        limit=row.limit,
        period_s=row.period_s,
        algorithm=Algorithm(row.algorithm),
    )


class RuleStore:
    """Reads and writes rules."""

    async def create(self, conn: AsyncConnection, values: dict[str, Any]) -> Rule:
        """A new rule; RuleTakenError for a second rule on one (tier, path) or a taken name."""
        statement = insert(rule).values(**values, created_at=datetime.now(UTC)).returning(*rule.c)
        try:
            async with conn.begin_nested():
                row = (await conn.execute(statement)).one()
        except IntegrityError as exc:
            if violated_unique(exc) is not None:
                raise RuleTakenError() from None
            raise
        return to_rule(row)

    async def get(self, conn: AsyncConnection, tier_id: int, rule_id: int) -> Rule:
        """A rule of a tier."""
        statement = select(rule).where(rule.c.tier_id == tier_id, rule.c.id == rule_id)
        row = (await conn.execute(statement)).one_or_none()
        if row is None:
            raise RuleNotFoundError()
        return to_rule(row)

    async def all(self, conn: AsyncConnection) -> list[Rule]:
        """Every rule (the service caches them all)."""
        return [to_rule(row) for row in await conn.execute(select(rule).order_by(rule.c.id))]

    async def page(
        self, conn: AsyncConnection, tier_id: int, *, offset: int, size: int
    ) -> tuple[list[Rule], int]:
        """One page of a tier's rules by id, and their total."""
        rows = await conn.execute(
            select(rule)
            .where(rule.c.tier_id == tier_id)
            .order_by(rule.c.id)
            .offset(offset)
            .limit(size)
        )
        total = await conn.execute(
            select(func.count()).select_from(rule).where(rule.c.tier_id == tier_id)
        )
        return [to_rule(row) for row in rows], int(total.scalar_one())

    async def change(
        self, conn: AsyncConnection, tier_id: int, rule_id: int, values: dict[str, Any]
    ) -> Rule:
        """Apply the given column values to a rule of a tier."""
        statement = (
            update(rule)
            .where(rule.c.tier_id == tier_id, rule.c.id == rule_id)
            .values(**values, updated_at=datetime.now(UTC))
            .returning(*rule.c)
        )
        try:
            async with conn.begin_nested():
                row = (await conn.execute(statement)).one_or_none()
        except IntegrityError as exc:
            if violated_unique(exc) is not None:
                raise RuleTakenError() from None
            raise
        if row is None:
            raise RuleNotFoundError()
        return to_rule(row)

    async def delete(self, conn: AsyncConnection, tier_id: int, rule_id: int) -> None:
        """Remove a rule of a tier."""
        statement = (
            delete(rule).where(rule.c.tier_id == tier_id, rule.c.id == rule_id).returning(rule.c.id)
        )
        if (await conn.execute(statement)).first() is None:
            raise RuleNotFoundError()
