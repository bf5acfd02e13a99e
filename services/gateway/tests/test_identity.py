from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from gateway.identity import Authenticator
from gateway.revocations import RevocationList
from meshplate_core.tokens import InvalidTokenError


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


def _token(key: Key) -> str:
    now = time.time()
    claims: dict[str, Any] = {
        "iss": "meshplate-auth",
        "aud": "meshplate",
        "sub": "7",
        "jti": uuid.uuid4().hex,
        "typ": "access",
        "iat": now,
        "exp": int(now) + 60,
    }
    return jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid})


async def test_a_key_auth_stops_publishing_stops_being_trusted() -> None:
    old, new = Key("old"), Key("new")
    published = [old.jwk, new.jwk]

    async def fetch() -> list[dict[str, str]]:
        return list(published)

    revocations = RevocationList()
    revocations.synced.set()
    authenticator = Authenticator(
        fetch, revocations, issuer="meshplate-auth", audience="meshplate", ttl_s=0.05
    )
    await authenticator.load_keys()
    assert (await authenticator.authenticate(_token(old))).user_id == 7

    published.remove(old.jwk)
    await asyncio.sleep(0.1)

    with pytest.raises(InvalidTokenError):
        await authenticator.authenticate(_token(old))
    assert (await authenticator.authenticate(_token(new))).user_id == 7
