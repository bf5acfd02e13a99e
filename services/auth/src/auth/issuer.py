"""Issuing tokens: access and refresh JWTs signed with the key ring's signing key."""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from auth.domain import IssuedToken, Subject, TokenPair
from auth.keys import KeyRing
from meshplate_core.tokens import ALGORITHM


class TokenIssuer:
    """Signs access tokens (short-lived) and refresh tokens (one family per login)."""

    def __init__(
        self,
        keys: KeyRing,
        *,
        issuer: str,
        audience: str,
        access_lifetime: timedelta,
        refresh_lifetime: timedelta,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime

    def pair(self, subject: Subject, *, family_id: str) -> TokenPair:
        """A new access token and a new refresh token of `family_id`."""
        now = time.time()
        access = self._sign(
            {
                "typ": "access",
                "tier_id": subject.tier_id,
                "is_superuser": subject.is_superuser,
                "fam": family_id,
            },
            subject=subject,
            now=now,
            lifetime=self.access_lifetime,
        )
        refresh = self._sign(
            {"typ": "refresh", "fam": family_id},
            subject=subject,
            now=now,
            lifetime=self.refresh_lifetime,
        )
        return TokenPair(access=access, refresh=refresh)

    def _sign(
        self, claims: dict[str, Any], *, subject: Subject, now: float, lifetime: timedelta
    ) -> IssuedToken:
        token_id = uuid.uuid4().hex
        expires = now + lifetime.total_seconds()
        payload = {
            **claims,
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(subject.user_id),
            "jti": token_id,
            # Milliseconds: "revoked before T" must not catch a token issued just after T.
            "iat": math.floor(now * 1000) / 1000,
            "exp": int(expires),
        }
        token = jwt.encode(
            payload,
            self.keys.signing.private,
            algorithm=ALGORITHM,
            headers={"kid": self.keys.signing.kid},
        )
        return IssuedToken(
            token=token, token_id=token_id, expires_at=datetime.fromtimestamp(int(expires), UTC)
        )
