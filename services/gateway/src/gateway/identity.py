"""Who is calling: access tokens verified locally, without a call to auth per request.

The signature is checked against auth's public keys (fetched at start, again every `ttl_s` so a
key auth stopped publishing stops being trusted, and when a token names an unknown `kid`, at most
every `refetch_s`, so made-up key ids cannot flood auth), the claims by the shared rules of
`meshplate_core.tokens`, and revocation against the followed revocation list.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.revocations import RevocationList
from meshplate_core.errors import UnavailableError
from meshplate_core.tokens import Claims, InvalidTokenError, UnknownKeyError, public_key, verify

log = logging.getLogger(__name__)

FetchKeys = Callable[[], Awaitable[list[dict[str, str]]]]


class Authenticator:
    """Verifies access tokens: signature, claims, revocation."""

    def __init__(
        self,
        fetch_keys: FetchKeys,
        revocations: RevocationList,
        *,
        issuer: str,
        audience: str,
        refetch_s: float = 10.0,
        ttl_s: float = 300.0,
    ) -> None:
        self._fetch_keys = fetch_keys
        self._revocations = revocations
        self._issuer = issuer
        self._audience = audience
        self._refetch_s = refetch_s
        self._ttl_s = ttl_s
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at = float("-inf")

    async def load_keys(self) -> None:
        """Fetch the published keys now."""
        self._fetched_at = time.monotonic()
        keys = {}
        for jwk in await self._fetch_keys():
            try:
                keys[jwk["kid"]] = public_key(jwk)
            except (KeyError, ValueError):
                log.error("ignoring an unusable published key %r", jwk.get("kid"))
        self._keys = keys

    async def authenticate(self, token: str) -> Claims:
        """The claims of a valid, unrevoked access token; InvalidTokenError otherwise."""
        age = time.monotonic() - self._fetched_at
        if age > self._ttl_s:
            await self._refresh_keys()
        try:
            claims = self._verify(token)
        except UnknownKeyError:
            if time.monotonic() - self._fetched_at < self._refetch_s:
                raise
            await self._refresh_keys()
            claims = self._verify(token)
        if not self._revocations.synced.is_set():
            raise UnavailableError("revocation list unavailable")
        if self._revocations.is_revoked(claims):
            raise InvalidTokenError()
        return claims

    async def _refresh_keys(self) -> None:
        try:
            await self.load_keys()
        except grpc.aio.AioRpcError as exc:
            raise UnavailableError("signing keys unavailable") from exc

    def _verify(self, token: str) -> Claims:
        return verify(
            token, self._keys, issuer=self._issuer, audience=self._audience, expected="access"
        )
