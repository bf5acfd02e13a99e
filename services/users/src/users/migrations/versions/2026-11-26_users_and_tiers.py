"""Users and tiers.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tier",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tier"),
        sa.UniqueConstraint("name", name="uq_tier_name"),
    )
    op.create_table(
        "user",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(30), nullable=False),
        sa.Column("username", sa.String(20), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("hashed_password", sa.String(255), nullable=False),
        sa.Column("profile_image_url", sa.String(2048)),
        sa.Column("tier_id", Id),
        sa.Column("is_superuser", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("is_deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_user"),
        sa.UniqueConstraint("uuid", name="uq_user_uuid"),
        sa.UniqueConstraint("username", name="uq_user_username"),
        sa.UniqueConstraint("email", name="uq_user_email"),
        sa.ForeignKeyConstraint(
            ["tier_id"], ["tier.id"], name="fk_user_tier_id_tier", ondelete="RESTRICT"
        ),
    )
    op.create_index("ix_user_tier_id", "user", ["tier_id"])


def downgrade() -> None:
    op.drop_index("ix_user_tier_id", table_name="user")
    op.drop_table("user")
    op.drop_table("tier")
