"""UserStore: users in the service's own database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from users.domain import EmailTakenError, Registration, User, UsernameTakenError, UserNotFoundError
from users.storage.errors import violated_unique
from users.storage.tables import tier, user

_TAKEN = {"uq_user_username": UsernameTakenError, "uq_user_email": EmailTakenError}


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands timestamps back without their zone; they were written in UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def to_user(row: Row[Any]) -> User:
    """A domain user from a row of the `user` table."""
    created_at = _utc(row.created_at)
    assert created_at is not None
    return User(
        id=row.id,
        uuid=str(row.uuid),
        name=row.name,
        username=row.username,
        email=row.email,
        hashed_password=row.hashed_password,
        profile_image_url=row.profile_image_url,
        tier_id=row.tier_id,
        is_superuser=row.is_superuser,
        created_at=created_at,
        updated_at=_utc(row.updated_at),
    )


class UserStore:
    """Reads and writes users; uniqueness is enforced by the database, so races cannot break it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(
        self, registration: Registration, *, hashed_password: str, tier_name: str
    ) -> User:
        """Insert a user on the tier named `tier_name` (no tier when it does not exist)."""
        tier_id = select(tier.c.id).where(tier.c.name == tier_name).scalar_subquery()
        statement = (
            insert(user)
            .values(
                uuid=uuid.uuid4(),
                name=registration.name,
                username=registration.username,
                email=registration.email,
                hashed_password=hashed_password,
                tier_id=tier_id,
            )
            .returning(*user.c)
        )
        try:
            async with self._engine.begin() as conn:
                row = (await conn.execute(statement)).one()
        except IntegrityError as exc:
            taken = _TAKEN.get(violated_unique(exc) or "")
            if taken is None:
                raise
            raise taken() from None
        return to_user(row)

    async def get_by_username(self, username: str) -> User:
        """The live user with this username."""
        return await self._get_one(user.c.username == username)

    async def get_by_id(self, user_id: int) -> User:
        """The live user with this id."""
        return await self._get_one(user.c.id == user_id)

    async def _get_one(self, condition: Any) -> User:
        statement = select(user).where(condition, user.c.is_deleted.is_(False))
        async with self._engine.connect() as conn:
            row = (await conn.execute(statement)).one_or_none()
        if row is None:
            raise UserNotFoundError()
        return to_user(row)
