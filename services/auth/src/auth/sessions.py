"""Sessions: auth's use cases (login, refresh, logout, revocation), each one transaction.

Revocations are committed with an outbox event on `auth.revocations`, which every gateway follows
to refuse revoked access tokens without asking auth.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from auth.directory import UsersDirectory
from auth.domain import InvalidRefreshTokenError, TokenPair
from auth.issuer import TokenIssuer
from auth.storage.sessions import SessionStore
from meshplate_core.events import TokensRevoked
from meshplate_core.outbox import Outbox
from meshplate_core.tokens import Claims, InvalidTokenError, TokenType, verify
from meshplate_core.transactions import Connection, Database


def _now() -> datetime:
    return datetime.now(UTC)


class Sessions:
    """Issues, rotates and revokes tokens."""

    def __init__(
        self,
        *,
        database: Database,
        outbox: Outbox,
        issuer: TokenIssuer,
        users: UsersDirectory,
    ) -> None:
        self._database = database
        self._outbox = outbox
        self._issuer = issuer
        self._users = users
        self._store = SessionStore()
        self._public_keys = {key.kid: key.private.public_key() for key in issuer.keys.published}

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        async with self._database.transaction() as conn:
            yield conn
        self._outbox.notify()

    def jwks(self) -> list[dict[str, str]]:
        """Every published public key, as JWKs."""
        return [key.jwk for key in self._issuer.keys.published]

    def _verify(self, token: str, expected: TokenType) -> Claims:
        return verify(
            token,
            self._public_keys,
            issuer=self._issuer.issuer,
            audience=self._issuer.audience,
            expected=expected,
        )

    def _revocation(self, user_id: int, now: datetime, **which: object) -> TokensRevoked:
        # Gateways need an entry only while access tokens it names can still be alive.
        return TokensRevoked(
            user_id=user_id, expires_at=now + self._issuer.access_lifetime, **which
        )

    async def login(
        self, username_or_email: str, password: str, *, time_left_s: float | None = None
    ) -> TokenPair:
        """A new family with its first pair, for valid credentials (`time_left_s`: the
        caller's remaining deadline, passed on to the password check)."""
        subject = await self._users.check_credentials(
            username_or_email, password, time_left_s=time_left_s
        )
        family_id = str(uuid.uuid4())
        pair = self._issuer.pair(subject, family_id=family_id)
        # One statement that announces nothing: no BEGIN and COMMIT around it.
        async with self._database.autocommit() as conn:
            await self._store.open_family(
                conn,
                family_id=family_id,
                user_id=subject.user_id,
                refresh_id=pair.refresh.token_id,
                expires_at=pair.refresh.expires_at,
                now=_now(),
            )
        return pair

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate: a new pair for the family's current refresh token. Presenting any other of
        its tokens again (a stolen copy, or the victim after the thief) revokes the family."""
        try:
            claims = self._verify(refresh_token, "refresh")
        except InvalidTokenError:
            raise InvalidRefreshTokenError() from None
        family_id = claims.family_id
        if family_id is None or await self._revoked_for_user(claims):
            raise InvalidRefreshTokenError()
        subject = await self._users.subject(claims.user_id)
        now = _now()
        if subject is None:
            async with self._transaction() as conn:
                await self._revoke_family(conn, claims.user_id, family_id, now)
            raise InvalidRefreshTokenError()
        pair = self._issuer.pair(subject, family_id=family_id)
        async with self._transaction() as conn:
            rotated = await self._store.rotate(
                conn,
                family_id=family_id,
                presented_id=claims.token_id,
                new_id=pair.refresh.token_id,
                expires_at=pair.refresh.expires_at,
                now=now,
            )
            if not rotated:
                await self._revoke_family(conn, claims.user_id, family_id, now)
        if not rotated:
            raise InvalidRefreshTokenError()
        return pair

    async def logout(self, access_token: str, refresh_token: str | None) -> None:
        """Revoke the access token and its login's family (and the refresh token's, if other)."""
        claims = await self.authenticate(access_token)
        families = {claims.family_id} if claims.family_id else set()
        if refresh_token:
            try:
                refresh = self._verify(refresh_token, "refresh")
            except InvalidTokenError:
                refresh = None
            if refresh is not None and refresh.user_id == claims.user_id and refresh.family_id:
                families.add(refresh.family_id)
        now = _now()
        async with self._transaction() as conn:
            newly = await self._store.revoke_token(
                conn,
                token_id=claims.token_id,
                user_id=claims.user_id,
                expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
                now=now,
            )
            if newly:
                await self._outbox.add(
                    conn, self._revocation(claims.user_id, now, token_id=claims.token_id)
                )
                for family_id in sorted(families):
                    await self._revoke_family(conn, claims.user_id, family_id, now)
        if not newly:
            raise InvalidTokenError()

    async def authenticate(self, access_token: str) -> Claims:
        """The claims of a valid, unrevoked access token."""
        claims = self._verify(access_token, "access")
        async with self._database.connection() as conn:
            if await self._store.token_revoked(conn, claims.token_id) or (
                claims.family_id and await self._store.family_revoked(conn, claims.family_id)
            ):
                raise InvalidTokenError()
        if await self._revoked_for_user(claims):
            raise InvalidTokenError()
        return claims

    async def revoke_user(self, user_id: int, *, before: datetime | None = None) -> None:
        """Revoke every token of a user issued before `before` (default: now)."""
        now = _now()
        before = before or now
        async with self._transaction() as conn:
            families = await self._store.revoke_user(conn, user_id, before=before, now=now)
            await self._outbox.add(conn, self._revocation(user_id, now, issued_before=before))
            # The families too: a token refreshed just after `before` is still of a revoked login.
            for family_id in families:
                await self._outbox.add(conn, self._revocation(user_id, now, family_id=family_id))

    async def purge(self) -> tuple[int, int]:
        """Remove rows that only name expired tokens: (revocations, families)."""
        now = _now()
        async with self._transaction() as conn:
            return await self._store.purge(
                conn, now=now, user_revocations_before=now - self._issuer.refresh_lifetime
            )

    async def _revoked_for_user(self, claims: Claims) -> bool:
        async with self._database.connection() as conn:
            before = await self._store.user_revoked_before(conn, claims.user_id)
        return before is not None and claims.issued_at < before.timestamp()

    async def _revoke_family(
        self, conn: Connection, user_id: int, family_id: str, now: datetime
    ) -> None:
        if await self._store.revoke_family(conn, family_id, now=now) is not None:
            await self._outbox.add(conn, self._revocation(user_id, now, family_id=family_id))
