"""Rule administration: each change is committed, then announced to every replica."""

from __future__ import annotations

from typing import Any

from meshplate_core.errors import InvalidArgumentError
from meshplate_core.transactions import Database
from ratelimit.domain import Algorithm, Rule, check_bounds, normalize_path
from ratelimit.limiter import Limiter
from ratelimit.storage.rules import RuleStore

MAX_PAGE_SIZE = 100
NAME_LENGTH = (1, 100)


def _check_name(name: str) -> str:
    if not NAME_LENGTH[0] <= len(name) <= NAME_LENGTH[1] or name != name.strip():
        raise InvalidArgumentError("name must be 1 to 100 characters", field="name")
    return name


class Rules:
    """Create, read, change and delete rules."""

    def __init__(self, database: Database, limiter: Limiter) -> None:
        self._database = database
        self._limiter = limiter
        self._store = RuleStore()

    async def create(
        self, *, tier_id: int, path: str, limit: int, period_s: int, name: str, algorithm: Algorithm
    ) -> Rule:
        """A new rule for a tier."""
        path = normalize_path(path)
        check_bounds(limit=limit, period_s=period_s)
        values = {
            "tier_id": tier_id,
            "path": path,
            "limit": limit,
            "period_s": period_s,
            "name": _check_name(name) if name else f"tier{tier_id}:{path}"[:100],
            "algorithm": algorithm.value,
        }
        async with self._database.transaction() as conn:
            rule = await self._store.create(conn, values)
        await self._limiter.rules_changed()
        return rule

    async def get(self, tier_id: int, rule_id: int) -> Rule:
        """One rule of a tier."""
        async with self._database.connection() as conn:
            return await self._store.get(conn, tier_id, rule_id)

    async def page(self, tier_id: int, page: int, size: int) -> tuple[list[Rule], int]:
        """One page of a tier's rules."""
        if page < 1:
            raise InvalidArgumentError("page must be at least 1", field="page")
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise InvalidArgumentError("items_per_page must be 1 to 100", field="items_per_page")
        async with self._database.connection() as conn:
            return await self._store.page(conn, tier_id, offset=(page - 1) * size, size=size)

    async def change(self, tier_id: int, rule_id: int, changes: dict[str, Any]) -> Rule:
        """Change the given fields of a rule; the next check on every replica uses it."""
        values = dict(changes)
        if "path" in values:
            values["path"] = normalize_path(values["path"])
        if "name" in values:
            values["name"] = _check_name(values["name"])
        if "algorithm" in values:
            values["algorithm"] = values["algorithm"].value
        async with self._database.transaction() as conn:
            current = await self._store.get(conn, tier_id, rule_id)
            check_bounds(
                limit=values.get("limit", current.limit),
                period_s=values.get("period_s", current.period_s),
            )
            rule = await self._store.change(conn, tier_id, rule_id, values)
        await self._limiter.rules_changed()
        return rule

    async def delete(self, tier_id: int, rule_id: int) -> None:
        """Remove a rule."""
        async with self._database.transaction() as conn:
            await self._store.delete(conn, tier_id, rule_id)
        await self._limiter.rules_changed()
