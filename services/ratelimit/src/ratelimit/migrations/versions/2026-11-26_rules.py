"""Rate-limit rules.

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
        "rule",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tier_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("path", sa.String(255), nullable=False),
        sa.Column("limit", sa.BigInteger(), nullable=False),
        sa.Column("period_s", sa.BigInteger(), nullable=False),
        sa.Column("algorithm", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_rule"),
        sa.UniqueConstraint("name", name="uq_rule_name"),
        sa.UniqueConstraint("tier_id", "path", name="uq_rule_tier_id_path"),
        sa.CheckConstraint('"limit" >= 1', name="ck_rule_limit_positive"),
        sa.CheckConstraint("period_s >= 1", name="ck_rule_period_positive"),
    )


def downgrade() -> None:
    op.drop_table("rule")
