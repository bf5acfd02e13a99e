"""Access tokens verified locally against auth's published keys, without a call per token.

The signature is checked against auth's public keys (fetched at start, again every `ttl_s` so a
key auth stopped publishing stops being trusted, and when a token names an unknown `kid`, at most
every `refetch_s`, so made-up key ids cannot flood auth), the claims by the shared rules of
`meshplate_core.tokens`. meshplate_core.authenticator adds the revocation check on top, for the
gateway and for the users service (the end user's token forwarded with each write).

A verified token is remembered until it expires (at most `cache_size` of them, keyed by the
token itself), so a client's repeated requests cost one signature check, not one each, and the
memory is dropped for tokens whose key is no longer published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from itertools import islice

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from meshplate.auth.v1 import auth_pb2
from meshplate_core.errors import UnavailableError
from meshplate_core.tokens import (
    LEEWAY_S,
    Claims,
    UnknownKeyError,
    key_id,
    public_key,
    verify,
)

log = logging.getLogger(__name__)

FetchKeys = Callable[[], Awaitable[list[dict[str, str]]]]


def published_keys(reply: auth_pb2.GetJwksResponse) -> list[dict[str, str]]:
    """auth's GetJwks answer as the JWKs a FetchKeys returns."""
    return [
        {"kty": k.kty, "crv": k.crv, "x": k.x, "kid": k.kid, "alg": k.alg, "use": k.use}
        for k in reply.keys
    ]


class TokenVerifier:
    """Verifies access tokens: signature and claims (not revocation)."""

    def __init__(
        self,
        fetch_keys: FetchKeys,
        *,
        issuer: str,
        audience: str,
        refetch_s: float = 10.0,
        ttl_s: float = 300.0,
        cache_size: int = 10_000,
    ) -> None:
        self._fetch_keys = fetch_keys
        self._issuer = issuer
        self._audience = audience
        self._refetch_s = refetch_s
        self._ttl_s = ttl_s
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at = float("-inf")
        self._cache_size = cache_size
        # token -> (its claims, the key id that signed it); in insertion order, oldest first.
        self._verified: dict[str, tuple[Claims, str]] = {}

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
        self._verified = {t: v for t, v in self._verified.items() if v[1] in keys}

    async def verify(self, token: str) -> Claims:
        """The claims of a valid access token; InvalidTokenError otherwise, UnavailableError
        while auth's keys cannot be had."""
        age = time.monotonic() - self._fetched_at
        if age > self._ttl_s or (not self._keys and age >= self._refetch_s):
            await self._refresh_keys()
        claims = self._remembered(token)
        if claims is None:
            try:
                claims = self._verify(token)
            except UnknownKeyError:
                if time.monotonic() - self._fetched_at >= self._refetch_s:
                    await self._refresh_keys()
                claims = self._verify(token)
            self._remember(token, claims)
        return claims

    async def _refresh_keys(self) -> None:
        try:
            await self.load_keys()
        except grpc.aio.AioRpcError as exc:
            raise UnavailableError("signing keys unavailable") from exc

    def _remembered(self, token: str) -> Claims | None:
        entry = self._verified.get(token)
        if entry is None:
            return None
        claims = entry[0]
        if claims.expires_at + LEEWAY_S <= time.time():
            # Verified again, so the caller gets the same error as for any expired token.
            del self._verified[token]
            return None
        return claims

    def _remember(self, token: str, claims: Claims) -> None:
        if len(self._verified) >= self._cache_size:
            now = time.time()
            self._verified = {
                t: v for t, v in self._verified.items() if v[0].expires_at + LEEWAY_S > now
            }
            # Still full of live tokens: the oldest tenth goes (they are verified again if used).
            if len(self._verified) >= self._cache_size:
                for oldest in list(islice(self._verified, self._cache_size // 10 or 1)):
                    del self._verified[oldest]
        self._verified[token] = (claims, key_id(token))

    def _verify(self, token: str) -> Claims:
        if not self._keys:
            # Auth's keys were never fetched: the token may well be good; we cannot tell.
            raise UnavailableError("signing keys unavailable")
        return verify(
            token, self._keys, issuer=self._issuer, audience=self._audience, expected="access"
        )
