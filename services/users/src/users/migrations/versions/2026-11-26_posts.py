"""Posts, with the index that serves an author's newest-first listing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "post",
        sa.Column("id", Id, nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(30), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("media_url", sa.String(2048)),
        sa.Column("created_by_user_id", Id, nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_post"),
        sa.UniqueConstraint("uuid", name="uq_post_uuid"),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"],
            ["user.id"],
            name="fk_post_created_by_user_id_user",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_post_author_newest",
        "post",
        ["created_by_user_id", sa.text("created_at DESC"), sa.text("id DESC")],
        postgresql_where=sa.text("NOT is_deleted"),
        sqlite_where=sa.text("NOT is_deleted"),
    )


def downgrade() -> None:
    op.drop_index("ix_post_author_newest", table_name="post")
    op.drop_table("post")
