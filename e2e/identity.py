"""Helpers of the identity tests: sign up, log in, and forge tokens the way an attacker would."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PASSWORD = "correct horse"
# The first admin the stack creates (see conftest.py).
ADMIN = ("root", "root-password")


async def sign_up(
    client: httpx.AsyncClient, username: str, email: str | None = None
) -> dict[str, Any]:
    """A new user (201 asserted)."""
    response = await client.post(
        "/api/v1/user",
        json={
            "name": username.title(),
            "username": username,
            "email": email or f"{username}@example.com",
            "password": PASSWORD,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def log_in(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> tuple[str, str]:
    """(access token, refresh cookie) of a successful login."""
    response = await client.post("/api/v1/login", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["access_token"], response.cookies["refresh_token"]


def with_cookie(refresh_token: str | None, **headers: str) -> dict[str, str]:
    """Headers that send exactly this refresh cookie (or none)."""
    return {**headers, **({"Cookie": f"refresh_token={refresh_token}"} if refresh_token else {})}


async def refresh(client: httpx.AsyncClient, refresh_token: str | None) -> httpx.Response:
    """POST /refresh with exactly this cookie (the client's own jar is emptied first)."""
    client.cookies.clear()
    return await client.post("/api/v1/refresh", headers=with_cookie(refresh_token))


async def logout(
    client: httpx.AsyncClient, access: str, refresh_token: str | None = None
) -> httpx.Response:
    """POST /logout with this bearer token and exactly this cookie (or none)."""
    client.cookies.clear()
    return await client.post(
        "/api/v1/logout", headers=with_cookie(refresh_token, Authorization=f"Bearer {access}")
    )


async def status_once_revoked(
    client: httpx.AsyncClient, access: str, *, within_s: float = 1
) -> int:
    """GET /user/me/ with `access` until it is refused (401) or `within_s` has passed: the last
    status. A revocation reaches the gateways over a stream, a moment after the call that made it
    (milliseconds: `make bench` measures it against a 100 ms target; a second here is a bound a
    loaded machine keeps, and far below what any polling of the list would take)."""
    deadline = time.monotonic() + within_s
    while True:
        status = (await client.get("/api/v1/user/me/", headers=bearer(access))).status_code
        if status == 401 or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.02)


def forge_hs256(secret: bytes, claims: dict[str, Any], *, kid: str) -> str:
    """An HS256 token keyed with `secret` (PyJWT refuses to, for an asymmetric key's bytes)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = part(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(signature)}"


def tampered(token: str, **changes: Any) -> str:
    """The token with its payload changed and its signature kept."""
    header, _, signature = token.split(".")
    claims = {**claims_of(token), **changes}
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


def signing_key(key_file: Path) -> Ed25519PrivateKey:
    """Auth's own signing key (to forge tokens that differ in one claim only)."""
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a token, unverified."""
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


def kid_of(token: str) -> str:
    """The `kid` of a token's header."""
    return str(jwt.get_unverified_header(token)["kid"])


def forge(key: Any, claims: dict[str, Any], *, kid: str, algorithm: str = "EdDSA") -> str:
    """A token signed with `key` (any algorithm PyJWT knows)."""
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


def unsigned(claims: dict[str, Any], *, kid: str) -> str:
    """An `alg: none` token."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{part(claims)}."


def fresh_claims(template: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A token's claims with a new id and a new issue time, and the given changes."""
    now = time.time()
    return {**template, "jti": uuid.uuid4().hex, "iat": round(now, 3), **changes}


async def ann_bob_and_root(client: httpx.AsyncClient) -> dict[str, dict[str, str]]:
    """Sign up ann and bob; the Authorization headers of ann, bob and the admin, root."""
    await sign_up(client, "ann")
    await sign_up(client, "bob")
    headers = {}
    for name, password in (("ann", PASSWORD), ("bob", PASSWORD), ADMIN):
        access, _ = await log_in(client, name, password)
        headers[name] = bearer(access)
    return headers
