from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from meshplate_core.authenticator import Authenticator
from meshplate_core.errors import UnavailableError
from meshplate_core.events import TokensRevoked
from meshplate_core.revocations import RevocationList
from meshplate_core.tokens import LEEWAY_S, InvalidTokenError
from meshplate_core.verifier import TokenVerifier


class Key:
    """An Ed25519 key pair with its published JWK."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = Ed25519PrivateKey.generate()
        self.jwk: dict[str, str] = {
            **OKPAlgorithm.to_jwk(self.private.public_key(), as_dict=True),
            "kid": kid,
            "alg": "EdDSA",
            "use": "sig",
        }


def _token(key: Key, *, expires_in_s: float = 60) -> str:
    now = time.time()
    claims: dict[str, Any] = {
        "iss": "meshplate-auth",
        "aud": "meshplate",
        "sub": "7",
        "jti": uuid.uuid4().hex,
        "typ": "access",
        "iat": now,
        "exp": now + expires_in_s,
    }
    return jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid})


async def test_a_key_auth_stops_publishing_stops_being_trusted() -> None:
    old, new = Key("old"), Key("new")
    published = [old.jwk, new.jwk]
    authenticator = await _authenticator(published, ttl_s=0.05)
    remembered = _token(old)
    assert (await authenticator.authenticate(remembered)).user_id == 7

    published.remove(old.jwk)
    await asyncio.sleep(0.1)

    with pytest.raises(InvalidTokenError):
        await authenticator.authenticate(remembered)
    with pytest.raises(InvalidTokenError):
        await authenticator.authenticate(_token(old))
    assert (await authenticator.authenticate(_token(new))).user_id == 7


async def _authenticator(
    published: list[dict[str, str]],
    *,
    revocations: RevocationList | None = None,
    **verifier: Any,
) -> Authenticator:
    """An authenticator whose auth publishes `published` (as it is at each fetch), keys loaded;
    `verifier`: TokenVerifier's options."""

    async def fetch() -> list[dict[str, str]]:
        return list(published)

    if revocations is None:
        revocations = RevocationList()
        revocations.synced.set()
    authenticator = Authenticator(
        TokenVerifier(fetch, issuer="meshplate-auth", audience="meshplate", **verifier),
        revocations,
    )
    await authenticator.load_keys()
    return authenticator


async def test_a_remembered_token_is_refused_once_revoked() -> None:
    key = Key("k")
    revocations = RevocationList()
    revocations.synced.set()
    authenticator = await _authenticator([key.jwk], revocations=revocations)
    token = _token(key)
    claims = await authenticator.authenticate(token)

    revocations.add(
        TokensRevoked(
            user_id=claims.user_id,
            token_id=claims.token_id,
            expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
        )
    )

    with pytest.raises(InvalidTokenError):
        await authenticator.authenticate(token)


async def test_a_remembered_token_is_refused_once_expired() -> None:
    key = Key("k")
    authenticator = await _authenticator([key.jwk])
    token = _token(key, expires_in_s=1 - LEEWAY_S)
    assert (await authenticator.authenticate(token)).user_id == 7

    await asyncio.sleep(1.2)

    with pytest.raises(InvalidTokenError):
        await authenticator.authenticate(token)


async def test_the_memory_of_tokens_is_bounded_and_keeps_working() -> None:
    key = Key("k")
    authenticator = await _authenticator([key.jwk], cache_size=10)
    tokens = [_token(key) for _ in range(25)]

    verified = [await authenticator.authenticate(token) for token in tokens * 2]

    assert [claims.token_id for claims in verified] == [
        jwt.decode(token, options={"verify_signature": False})["jti"] for token in tokens * 2
    ]


async def test_tokens_wait_for_keys_never_fetched_rather_than_being_refused() -> None:
    key = Key("k")
    published: list[dict[str, str]] = []
    authenticator = await _authenticator(published, refetch_s=0.05)
    token = _token(key)
    with pytest.raises(UnavailableError):
        await authenticator.authenticate(token)

    published.append(key.jwk)
    await asyncio.sleep(0.1)

    assert (await authenticator.authenticate(token)).user_id == 7
