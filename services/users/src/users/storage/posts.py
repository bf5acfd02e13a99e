"""PostStore: posts in the service's own database (on the caller's connection)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from users.domain.pages import PageRequest
from users.domain.posts import NewPost, Post, PostChanges, PostNotFoundError
from users.domain.users import UserNotFoundError
from users.storage.tables import now, post, user
from users.storage.users import utc

# Spelled as the partial index predicate, so the planner can prove the index applies.
_LIVE_POST = ~post.c.is_deleted
_LIVE_USER = ~user.c.is_deleted


def to_post(row: Row[Any]) -> Post:
    """A domain post from a row of the `post` table."""
    return Post(
        id=row.id,
        uuid=str(row.uuid),
        title=row.title,
        text=row.text,
        media_url=row.media_url,
        created_by_user_id=row.created_by_user_id,
        created_at=utc(row.created_at) or row.created_at,
        updated_at=utc(row.updated_at),
    )


def _by_author(username: str) -> Any:
    return (
        select(post)
        .join(user, user.c.id == post.c.created_by_user_id)
        .where(user.c.username == username, _LIVE_USER, _LIVE_POST)
    )


def listing_statement(author_username: str, request: PageRequest) -> Any:
    """One page of an author's live posts, newest first, each row with the total."""
    return (
        _by_author(author_username)
        .add_columns(func.count().over().label("total"))
        .order_by(post.c.created_at.desc(), post.c.id.desc())
        .offset(request.offset)
        .limit(request.size)
    )


class PostStore:
    """Reads and writes posts."""

    async def create(self, conn: AsyncConnection, author_id: int, new: NewPost) -> Post:
        """Insert a post by a live author (UserNotFoundError otherwise)."""
        values = select(
            literal(uuid.uuid4()).label("uuid"),
            literal(new.title).label("title"),
            literal(new.text).label("text"),
            literal(new.media_url).label("media_url"),
            user.c.id,
            literal(now()).label("created_at"),
        ).where(user.c.id == author_id, _LIVE_USER)
        statement = (
            insert(post)
            .from_select(
                ["uuid", "title", "text", "media_url", "created_by_user_id", "created_at"], values
            )
            .returning(*post.c)
        )
        row = (await conn.execute(statement)).one_or_none()
        if row is None:
            raise UserNotFoundError()
        return to_post(row)

    async def get(self, conn: AsyncConnection, post_id: int, author_username: str) -> Post:
        """The live post with this id, written by the live user with this username."""
        row = (
            await conn.execute(_by_author(author_username).where(post.c.id == post_id))
        ).one_or_none()
        if row is None:
            raise PostNotFoundError()
        return to_post(row)

    async def page(
        self, conn: AsyncConnection, author_username: str, request: PageRequest
    ) -> tuple[list[Post], int]:
        """One page of an author's live posts, newest first, and their total: one query (the
        index `ix_post_author_newest` serves it), two only for a page past the end."""
        rows = (await conn.execute(listing_statement(author_username, request))).all()
        if rows:
            return [to_post(row) for row in rows], int(rows[0].total)
        author = (
            await conn.execute(
                select(user.c.id).where(user.c.username == author_username, _LIVE_USER)
            )
        ).first()
        if author is None:
            raise UserNotFoundError()
        total = await conn.execute(
            select(func.count())
            .select_from(post)
            .where(post.c.created_by_user_id == author.id, _LIVE_POST)
        )
        return [], int(total.scalar_one())

    async def change(self, conn: AsyncConnection, post_id: int, changes: PostChanges) -> Post:
        """Apply `changes` to a live post."""
        values: dict[str, Any] = {**changes.as_dict(), "updated_at": now()}
        statement = (
            update(post).where(post.c.id == post_id, _LIVE_POST).values(**values).returning(*post.c)
        )
        row = (await conn.execute(statement)).one_or_none()
        if row is None:
            raise PostNotFoundError()
        return to_post(row)

    async def soft_delete(self, conn: AsyncConnection, post_id: int) -> None:
        """Mark a live post deleted."""
        stamp = now()
        statement = (
            update(post)
            .where(post.c.id == post_id, _LIVE_POST)
            .values(is_deleted=True, deleted_at=stamp, updated_at=stamp)
            .returning(post.c.id)
        )
        if (await conn.execute(statement)).first() is None:
            raise PostNotFoundError()

    async def hard_delete(self, conn: AsyncConnection, post_id: int) -> None:
        """Remove a post."""
        statement = delete(post).where(post.c.id == post_id).returning(post.c.id)
        if (await conn.execute(statement)).first() is None:
            raise PostNotFoundError()
