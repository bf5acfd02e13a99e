"""Refresh families and revocations.

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


def upgrade() -> None:
    op.create_table(
        "refresh_family",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("current_jti", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_refresh_family"),
    )
    op.create_index("ix_refresh_family_user_id", "refresh_family", ["user_id"])
    op.create_index("ix_refresh_family_expires_at", "refresh_family", ["expires_at"])
    op.create_table(
        "revocation",
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti", name="pk_revocation"),
    )
    op.create_index("ix_revocation_expires_at", "revocation", ["expires_at"])
    op.create_table(
        "user_revocation",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("revoked_before", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_user_revocation"),
    )


def downgrade() -> None:
    op.drop_table("user_revocation")
    op.drop_index("ix_revocation_expires_at", table_name="revocation")
    op.drop_table("revocation")
    op.drop_index("ix_refresh_family_expires_at", table_name="refresh_family")
    op.drop_index("ix_refresh_family_user_id", table_name="refresh_family")
    op.drop_table("refresh_family")
