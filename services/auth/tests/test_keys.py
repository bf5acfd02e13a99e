from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from auth.keys import SigningKeyError, generate_pem, load_key_ring, parse_keys
from meshplate_core.settings import Environment


def test_first_key_signs_and_every_key_is_published() -> None:
    first, second = generate_pem(), generate_pem()

    ring = parse_keys(first + "\n" + second)

    assert ring.signing == ring.published[0]
    assert len({key.kid for key in ring.published}) == 2


def test_kid_is_the_stable_rfc7638_thumbprint() -> None:
    pem = generate_pem()

    assert parse_keys(pem).signing.kid == parse_keys(pem).signing.kid
    assert len(parse_keys(pem).signing.kid) == 43


def test_published_jwk_holds_no_private_part() -> None:
    jwk = parse_keys(generate_pem()).signing.jwk

    assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")


def test_local_run_generates_a_key_once_and_keeps_it(tmp_path: Path) -> None:
    target = tmp_path / "var" / "key.pem"

    first = load_key_ring(pem=None, key_file=None, generated_file=target, environment="local")
    second = load_key_ring(pem=None, key_file=None, generated_file=target, environment="local")

    assert first.signing.kid == second.signing.kid
    assert target.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_other_environments_refuse_to_start_without_keys(
    tmp_path: Path, environment: Environment
) -> None:
    with pytest.raises(SigningKeyError, match="AUTH_SIGNING_KEYS"):
        load_key_ring(
            pem=None, key_file=None, generated_file=tmp_path / "k.pem", environment=environment
        )


def test_key_file_is_read(tmp_path: Path) -> None:
    pem = generate_pem()
    (tmp_path / "keys.pem").write_text(pem)

    ring = load_key_ring(
        pem=None,
        key_file=tmp_path / "keys.pem",
        generated_file=tmp_path / "x",
        environment="production",
    )

    assert ring.signing.kid == parse_keys(pem).signing.kid


def test_keys_other_than_ed25519_are_refused() -> None:
    pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

    with pytest.raises(SigningKeyError, match="Ed25519"):
        parse_keys(pem.decode())


def test_text_without_a_key_is_refused() -> None:
    with pytest.raises(SigningKeyError):
        parse_keys("changethis")
