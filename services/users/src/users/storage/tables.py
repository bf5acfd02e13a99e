"""The users service's schema, as SQLAlchemy Core tables (the migrations' target metadata)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    false,
    text,
)

from meshplate_core.outbox import outbox_table

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")


def now() -> datetime:
    """The current time, timezone-aware, as every timestamp column stores it."""
    return datetime.now(UTC)


tier = Table(
    "tier",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(50), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, default=now),
)

user = Table(
    "user",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("uuid", Uuid(), nullable=False, unique=True),
    Column("name", String(30), nullable=False),
    Column("username", String(20), nullable=False, unique=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("hashed_password", String(255), nullable=False),
    Column("profile_image_url", String(2048)),
    # RESTRICT: a tier cannot disappear from under its users.
    Column("tier_id", Id, ForeignKey("tier.id", ondelete="RESTRICT"), index=True),
    Column("is_superuser", Boolean(), nullable=False, default=False, server_default=false()),
    Column("is_deleted", Boolean(), nullable=False, default=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False, default=now),
    Column("updated_at", DateTime(timezone=True)),
    Column("deleted_at", DateTime(timezone=True)),
)

post = Table(
    "post",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("uuid", Uuid(), nullable=False, unique=True),
    Column("title", String(30), nullable=False),
    Column("text", Text(), nullable=False),
    Column("media_url", String(2048)),
    # CASCADE: a user's hard delete removes their posts.
    Column("created_by_user_id", Id, ForeignKey("user.id", ondelete="CASCADE"), nullable=False),
    Column("is_deleted", Boolean(), nullable=False, default=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False, default=now),
    Column("updated_at", DateTime(timezone=True)),
    Column("deleted_at", DateTime(timezone=True)),
    # Serves exactly the listing query: one author's live posts, newest first.
    Index(
        "ix_post_author_newest",
        "created_by_user_id",
        text("created_at DESC"),
        text("id DESC"),
        postgresql_where=text("NOT is_deleted"),
        sqlite_where=text("NOT is_deleted"),
    ),
)

# Events committed with the change they announce, until the relay has published them.
outbox = outbox_table(metadata)
