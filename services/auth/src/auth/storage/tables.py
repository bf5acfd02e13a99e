"""The auth service's schema: refresh-token families and revocations."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table, Uuid

from meshplate_core.outbox import outbox_table

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row per login: every refresh token of one login belongs to its family, so a reused
# (stolen) refresh token can revoke all of them at once.
refresh_family = Table(
    "refresh_family",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("user_id", BigInteger(), nullable=False, index=True),
    # The id of the only refresh token of the family that may still be used.
    Column("current_jti", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("revoked_at", DateTime(timezone=True)),
)

# A revoked token, kept until it would have expired anyway.
revocation = Table(
    "revocation",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("user_id", BigInteger(), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

# "Every token of this user issued before this instant is revoked" (deletion, log out everywhere).
user_revocation = Table(
    "user_revocation",
    metadata,
    Column("user_id", BigInteger(), primary_key=True),
    Column("revoked_before", DateTime(timezone=True), nullable=False),
)

# Revocation events committed with the revocation, until the relay has published them.
outbox = outbox_table(metadata)
