"""The ratelimit service's schema: the rules (counters live in Redis)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

rule = Table(
    "rule",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    # The users service's tier id: no foreign key, the tier lives in another service's database.
    Column("tier_id", BigInteger(), nullable=False),
    Column("name", String(100), nullable=False, unique=True),
    # Normalised path or template, such as "/api/v1/{username}/posts".
    Column("path", String(255), nullable=False),
    Column("limit", BigInteger(), nullable=False),
    Column("period_s", BigInteger(), nullable=False),
    Column("algorithm", String(20), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True)),
    UniqueConstraint("tier_id", "path", name="uq_rule_tier_id_path"),
    CheckConstraint('"limit" >= 1', name="limit_positive"),
    CheckConstraint("period_s >= 1", name="period_positive"),
)
