"""Verifying Meshplate's JWTs: one set of rules for auth and for the gateway's local checks.

Tokens are EdDSA (Ed25519) JWTs. The algorithm is pinned (a token naming any other, `none`
included, is refused before a key is even chosen), the key is chosen by `kid` among the published
ones, and `iss`, `aud`, `exp`, `iat`, `sub`, `jti` and `typ` are all required. `iat` keeps
milliseconds, so "revoked everything issued before T" cannot catch a token issued just after T.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from meshplate_core.errors import UnauthenticatedError

ALGORITHM = "EdDSA"
TokenType = Literal["access", "refresh"]
_REQUIRED = ["iss", "aud", "exp", "iat", "sub", "jti", "typ"]
LEEWAY_S = 10


class InvalidTokenError(UnauthenticatedError):
    """A token is malformed, forged, expired, of the wrong type, for someone else, or revoked."""

    def __init__(self, message: str = "Invalid token") -> None:
        super().__init__(message)


class UnknownKeyError(InvalidTokenError):
    """A token names a key id that is not (yet) among the known public keys."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says."""

    user_id: int
    token_id: str
    type: TokenType
    issued_at: float
    expires_at: float
    tier_id: int | None
    is_superuser: bool
    family_id: str | None
    # The token itself, forwarded with the calls made for its user (never logged).
    token: str = field(default="", repr=False, compare=False)


def public_key(jwk: Mapping[str, str]) -> Ed25519PublicKey:
    """The Ed25519 public key of a JWK (RFC 8037 `OKP`)."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ValueError("not an Ed25519 key")
    key = jwt.PyJWK(dict(jwk), algorithm=ALGORITHM).key
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def key_id(token: str) -> str:
    """The `kid` a token names, after checking its header pins our algorithm."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidTokenError() from None
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or not isinstance(kid, str):
        raise InvalidTokenError()
    return kid


def verify(
    token: str,
    keys: Mapping[str, Ed25519PublicKey],
    *,
    issuer: str,
    audience: str,
    expected: TokenType,
) -> Claims:
    """The claims of a valid token of the `expected` type; InvalidTokenError otherwise."""
    kid = key_id(token)
    key = keys.get(kid)
    if key is None:
        raise UnknownKeyError()
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={"require": _REQUIRED},
            # Clocks of auth and the gateways may differ by a few seconds.
            leeway=LEEWAY_S,
        )
        claims = Claims(
            user_id=int(payload["sub"]),
            token_id=str(payload["jti"]),
            type=payload["typ"],
            issued_at=float(payload["iat"]),
            expires_at=float(payload["exp"]),
            tier_id=_optional_int(payload.get("tier_id")),
            is_superuser=payload.get("is_superuser") is True,
            family_id=_optional_str(payload.get("fam")),
            token=token,
        )
    except (jwt.PyJWTError, ValueError, TypeError):
        raise InvalidTokenError() from None
    if claims.type != expected:
        raise InvalidTokenError()
    return claims


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("not an integer")
    return value


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value
