"""UserStore: users in the service's own database.

Every method runs on the connection it is given, so a caller can make several changes (and their
outbox events) one transaction. Uniqueness is enforced by the database, so races cannot break it.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from meshplate_core.database import violated_unique
from users.domain.pages import PageRequest
from users.domain.users import (
    EmailTakenError,
    Registration,
    User,
    UserChanges,
    UsernameTakenError,
    UserNotFoundError,
    UserSearch,
)
from users.storage.tables import now, tier, user

_TAKEN = {"uq_user_username": UsernameTakenError, "uq_user_email": EmailTakenError}
_LIVE = user.c.is_deleted.is_(False)


def utc(value: datetime | None) -> datetime | None:
    """A timestamp with its zone (SQLite hands them back naive; they were written in UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def to_user(row: Row[Any]) -> User:
    """A domain user from a row of the `user` table."""
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
        created_at=utc(row.created_at) or row.created_at,
        updated_at=utc(row.updated_at),
    )


def _raise_if_taken(exc: IntegrityError) -> None:
    taken = _TAKEN.get(violated_unique(exc) or "")
    if taken is not None:
        raise taken() from None


class UserStore:
    """Reads and writes users."""

    async def create(
        self,
        conn: AsyncConnection,
        registration: Registration,
        *,
        hashed_password: str,
        tier_name: str,
        is_superuser: bool = False,
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
                is_superuser=is_superuser,
            )
            .returning(*user.c)
        )
        try:
            async with conn.begin_nested():
                row = (await conn.execute(statement)).one()
        except IntegrityError as exc:
            _raise_if_taken(exc)
            raise
        return to_user(row)

    async def get_by_username(
        self, conn: AsyncConnection, username: str, *, include_deleted: bool = False
    ) -> User:
        """The live (or, when asked, soft-deleted) user with this username."""
        return await self._get_one(conn, user.c.username == username, include_deleted)

    async def get_by_id(
        self, conn: AsyncConnection, user_id: int, *, include_deleted: bool = False
    ) -> User:
        """The live (or, when asked, soft-deleted) user with this id."""
        return await self._get_one(conn, user.c.id == user_id, include_deleted)

    async def find_for_login(self, conn: AsyncConnection, username_or_email: str) -> User | None:
        """The live user whose username, or e-mail address, this is."""
        key = user.c.email if "@" in username_or_email else user.c.username
        statement = select(user).where(key == username_or_email, _LIVE)
        row = (await conn.execute(statement)).one_or_none()
        return to_user(row) if row is not None else None

    async def exists(self, conn: AsyncConnection, username: str) -> bool:
        """Whether any user, live or soft-deleted, has this username."""
        statement = select(user.c.id).where(user.c.username == username)
        return (await conn.execute(statement)).first() is not None

    async def page(
        self, conn: AsyncConnection, request: PageRequest, search: UserSearch | None = None
    ) -> tuple[list[User], int]:
        """One page of the users a search matches (live ones by default) by id, and how many it
        matches in all."""
        search = search or UserSearch()
        matching: list[ColumnElement[bool]] = [user.c.is_deleted.is_(search.deleted)]
        if search.text:
            # Every character literal: `%` and `_` match themselves.
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", search.text) + "%"
            matching.append(
                or_(
                    user.c.name.ilike(pattern, escape="\\"),
                    user.c.username.ilike(pattern, escape="\\"),
                    user.c.email.ilike(pattern, escape="\\"),
                )
            )
        rows = await conn.execute(
            select(user)
            .where(*matching)
            .order_by(user.c.id)
            .offset(request.offset)
            .limit(request.size)
        )
        total = (
            await conn.execute(select(func.count()).select_from(user).where(*matching))
        ).scalar_one()
        return [to_user(row) for row in rows], int(total)

    async def restore(self, conn: AsyncConnection, user_id: int) -> User:
        """Make a soft-deleted user live again (a live one stays as it is)."""
        statement = (
            update(user)
            .where(user.c.id == user_id)
            .values(is_deleted=False, deleted_at=None, updated_at=now())
            .returning(*user.c)
        )
        row = (await conn.execute(statement)).one_or_none()
        if row is None:
            raise UserNotFoundError()
        return to_user(row)

    async def set_superuser(
        self, conn: AsyncConnection, user_id: int, flag: bool
    ) -> tuple[User, bool]:
        """Grant or take away a live user's superuser rights; the user, and whether this call
        changed them (decided by the row itself: of two calls at once, one changes)."""
        statement = (
            update(user)
            .where(user.c.id == user_id, _LIVE, user.c.is_superuser.is_distinct_from(flag))
            .values(is_superuser=flag, updated_at=now())
            .returning(*user.c)
        )
        row = (await conn.execute(statement)).one_or_none()
        if row is not None:
            return to_user(row), True
        return await self.get_by_id(conn, user_id), False

    async def change(self, conn: AsyncConnection, user_id: int, changes: UserChanges) -> User:
        """Apply `changes` to a live user."""
        values: dict[str, Any] = changes.as_dict()
        if not values:
            return await self.get_by_id(conn, user_id)
        try:
            async with conn.begin_nested():
                row = await self._update_one(conn, user_id, {**values, "updated_at": now()})
        except IntegrityError as exc:
            _raise_if_taken(exc)
            raise
        return to_user(row)

    async def set_password_hash(self, conn: AsyncConnection, user_id: int, hashed: str) -> None:
        """Store a new hash of the same password (an upgraded algorithm or cost)."""
        await conn.execute(update(user).where(user.c.id == user_id).values(hashed_password=hashed))

    async def set_tier(self, conn: AsyncConnection, user_id: int, tier_id: int) -> User:
        """Move a live user to a tier (which the caller checked exists)."""
        return to_user(
            await self._update_one(conn, user_id, {"tier_id": tier_id, "updated_at": now()})
        )

    async def soft_delete(self, conn: AsyncConnection, user_id: int) -> None:
        """Mark a live user deleted; their username and e-mail stay taken."""
        stamp = now()
        await self._update_one(
            conn, user_id, {"is_deleted": True, "deleted_at": stamp, "updated_at": stamp}
        )

    async def hard_delete(self, conn: AsyncConnection, user_id: int) -> None:
        """Remove a user (live or soft-deleted) and everything that belongs to them."""
        result = await conn.execute(delete(user).where(user.c.id == user_id).returning(user.c.id))
        if result.first() is None:
            raise UserNotFoundError()

    async def count_on_tier(self, conn: AsyncConnection, tier_id: int) -> int:
        """How many users (live or not) are on a tier."""
        statement = select(func.count()).select_from(user).where(user.c.tier_id == tier_id)
        return int((await conn.execute(statement)).scalar_one())

    async def _get_one(
        self, conn: AsyncConnection, condition: ColumnElement[bool], include_deleted: bool = False
    ) -> User:
        statement = select(user).where(condition)
        if not include_deleted:
            statement = statement.where(_LIVE)
        row = (await conn.execute(statement)).one_or_none()
        if row is None:
            raise UserNotFoundError()
        return to_user(row)

    async def _update_one(
        self, conn: AsyncConnection, user_id: int, values: dict[str, Any]
    ) -> Row[Any]:
        statement = (
            update(user).where(user.c.id == user_id, _LIVE).values(**values).returning(*user.c)
        )
        row = (await conn.execute(statement)).one_or_none()
        if row is None:
            raise UserNotFoundError()
        return row
