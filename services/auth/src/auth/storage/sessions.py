"""SessionStore: refresh families and revocations in auth's own database (caller's connection)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from auth.storage.tables import refresh_family, revocation, user_revocation


def _insert(conn: AsyncConnection) -> Any:
    # INSERT ... ON CONFLICT is spelled the same on both, but lives in each dialect.
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def _utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class SessionStore:
    """Reads and writes refresh families and revocations."""

    async def open_family(
        self,
        conn: AsyncConnection,
        *,
        family_id: str,
        user_id: int,
        refresh_id: str,
        expires_at: datetime,
        now: datetime,
    ) -> None:
        """Start a login's family with its first refresh token."""
        await conn.execute(
            insert(refresh_family).values(
                id=uuid.UUID(family_id),
                user_id=user_id,
                current_jti=refresh_id,
                created_at=now,
                expires_at=expires_at,
            )
        )

    async def rotate(
        self,
        conn: AsyncConnection,
        *,
        family_id: str,
        presented_id: str,
        new_id: str,
        expires_at: datetime,
        now: datetime,
    ) -> bool:
        """Replace the family's current refresh token, only if it is the one presented and the
        family is live (one statement, so two concurrent refreshes cannot both win)."""
        result = await conn.execute(
            update(refresh_family)
            .where(
                refresh_family.c.id == uuid.UUID(family_id),
                refresh_family.c.current_jti == presented_id,
                refresh_family.c.revoked_at.is_(None),
                refresh_family.c.expires_at > now,
            )
            .values(current_jti=new_id, expires_at=expires_at)
            .returning(refresh_family.c.id)
        )
        return result.first() is not None

    async def revoke_family(
        self, conn: AsyncConnection, family_id: str, *, now: datetime
    ) -> datetime | None:
        """Revoke a live family; when it expires, or None if it was not live."""
        result = await conn.execute(
            update(refresh_family)
            .where(
                refresh_family.c.id == uuid.UUID(family_id), refresh_family.c.revoked_at.is_(None)
            )
            .values(revoked_at=now)
            .returning(refresh_family.c.expires_at)
        )
        row = result.first()
        return _utc(row.expires_at) if row is not None else None

    async def family_revoked(self, conn: AsyncConnection, family_id: str) -> bool:
        """Whether a family was revoked (or never existed)."""
        row = (
            await conn.execute(
                select(refresh_family.c.revoked_at).where(
                    refresh_family.c.id == uuid.UUID(family_id)
                )
            )
        ).first()
        return row is None or row.revoked_at is not None

    async def revoke_token(
        self,
        conn: AsyncConnection,
        *,
        token_id: str,
        user_id: int,
        expires_at: datetime,
        now: datetime,
    ) -> bool:
        """Revoke one token; False when it already was (safe to race)."""
        statement = (
            _insert(conn)(revocation)
            .values(jti=token_id, user_id=user_id, revoked_at=now, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=["jti"])
            .returning(revocation.c.jti)
        )
        return (await conn.execute(statement)).first() is not None

    async def token_revoked(self, conn: AsyncConnection, token_id: str) -> bool:
        """Whether one token was revoked."""
        statement = select(revocation.c.jti).where(revocation.c.jti == token_id)
        return (await conn.execute(statement)).first() is not None

    async def revoke_user(
        self, conn: AsyncConnection, user_id: int, *, before: datetime, now: datetime
    ) -> list[str]:
        """Revoke every token of a user issued before `before`, and all their live families
        (safe to race: the later cut-off wins); the ids of the families it revoked."""
        values = _insert(conn)(user_revocation).values(user_id=user_id, revoked_before=before)
        await conn.execute(
            values.on_conflict_do_update(
                index_elements=["user_id"],
                set_={"revoked_before": values.excluded.revoked_before},
                where=user_revocation.c.revoked_before < values.excluded.revoked_before,
            )
        )
        revoked = await conn.execute(
            update(refresh_family)
            .where(
                refresh_family.c.user_id == user_id,
                refresh_family.c.revoked_at.is_(None),
                refresh_family.c.created_at < before,
            )
            .values(revoked_at=now)
            .returning(refresh_family.c.id)
        )
        return [str(row.id) for row in revoked]

    async def user_revoked_before(self, conn: AsyncConnection, user_id: int) -> datetime | None:
        """The instant before which every token of the user is revoked, if any."""
        statement = select(user_revocation.c.revoked_before).where(
            user_revocation.c.user_id == user_id
        )
        value = (await conn.execute(statement)).scalar_one_or_none()
        return _utc(value) if value is not None else None

    async def purge(
        self, conn: AsyncConnection, *, now: datetime, user_revocations_before: datetime
    ) -> tuple[int, int]:
        """Delete what only names expired tokens; (revocations, families) removed."""
        revoked = await conn.execute(
            delete(revocation).where(revocation.c.expires_at < now).returning(revocation.c.jti)
        )
        families = await conn.execute(
            delete(refresh_family)
            .where(refresh_family.c.expires_at < now)
            .returning(refresh_family.c.id)
        )
        await conn.execute(
            delete(user_revocation).where(
                user_revocation.c.revoked_before < user_revocations_before
            )
        )
        return len(revoked.all()), len(families.all())
