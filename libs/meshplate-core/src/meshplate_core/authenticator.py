"""Who is calling: access tokens verified locally (meshplate_core.verifier: auth's published
keys, no call to auth per request), then checked against the followed revocation list
(meshplate_core.revocations) on every request: the gateway's check of each request's token, and
the users service's of the token forwarded with each write."""

from __future__ import annotations

import asyncio
import contextlib

from meshplate_core.errors import UnavailableError
from meshplate_core.revocations import RevocationList
from meshplate_core.tokens import Claims, InvalidTokenError
from meshplate_core.verifier import TokenVerifier


class Authenticator:
    """Verifies access tokens: signature, claims, revocation."""

    def __init__(self, verifier: TokenVerifier, revocations: RevocationList) -> None:
        self._verifier = verifier
        self._revocations = revocations

    async def load_keys(self) -> None:
        """Fetch the published keys now."""
        await self._verifier.load_keys()

    async def authenticate(self, token: str, *, wait_s: float = 0.0) -> Claims:
        """The claims of a valid, unrevoked access token; InvalidTokenError otherwise, and
        UnavailableError while the revocation list is not known (after up to `wait_s` for it)."""
        claims = await self._verifier.verify(token)
        if not self._revocations.synced.is_set() and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._revocations.synced.wait()
        if not self._revocations.synced.is_set():
            raise UnavailableError("revocation list unavailable")
        if self._revocations.is_revoked(claims):
            raise InvalidTokenError()
        return claims
