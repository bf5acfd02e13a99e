"""Signing keys: Ed25519, named by their RFC 7638 thumbprint, published as a JWKS.

Several keys may be configured at once: the first signs new tokens, and every one is published,
so tokens signed by a retiring key stay verifiable until they expire (rotation by `kid`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshplate_core.settings import Environment

_PEM_BLOCK = re.compile(r"-----BEGIN PRIVATE KEY-----.+?-----END PRIVATE KEY-----", re.DOTALL)


class SigningKeyError(ValueError):
    """No usable signing key: none configured where one must be, or one that is not Ed25519."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    """A private key and the public JWK that verifies what it signs."""

    kid: str
    private: Ed25519PrivateKey
    jwk: dict[str, str]

    @classmethod
    def from_private(cls, private: Ed25519PrivateKey) -> SigningKey:
        """Name the key by the thumbprint of its public JWK (RFC 7638)."""
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        x = _b64url(raw)
        canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
        kid = _b64url(hashlib.sha256(canonical.encode()).digest())
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}
        return cls(kid=kid, private=private, jwk=jwk)


@dataclass(frozen=True)
class KeyRing:
    """The key that signs, and every key that is published."""

    signing: SigningKey
    published: tuple[SigningKey, ...]


def parse_keys(pem_text: str) -> KeyRing:
    """Every PEM private key in `pem_text`, the first one signing."""
    keys = []
    for block in _PEM_BLOCK.findall(pem_text):
        private = serialization.load_pem_private_key(block.encode(), password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise SigningKeyError("signing keys must be Ed25519")
        keys.append(SigningKey.from_private(private))
    if not keys:
        raise SigningKeyError("no PEM private key found")
    return KeyRing(signing=keys[0], published=tuple(keys))


def generate_pem() -> str:
    """A new Ed25519 private key in PEM (PKCS#8)."""
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def load_key_ring(
    *,
    pem: str | None,
    key_file: Path | None,
    generated_file: Path,
    environment: Environment,
) -> KeyRing:
    """Keys from settings, else from the key file; a local run generates and keeps one, so
    restarts keep sessions valid; staging and production refuse to start without keys."""
    if pem:
        return parse_keys(pem)
    if key_file is not None:
        return parse_keys(key_file.read_text())
    if environment != "local":
        raise SigningKeyError(
            "set AUTH_SIGNING_KEYS or AUTH_SIGNING_KEY_FILE: keys are generated for local runs only"
        )
    if not generated_file.exists():
        generated_file.parent.mkdir(parents=True, exist_ok=True)
        # Created readable by its owner only, then written.
        fd = os.open(generated_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(generate_pem())
    return parse_keys(generated_file.read_text())
