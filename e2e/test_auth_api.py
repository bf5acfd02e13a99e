"""Login, refresh, logout and the attacks that must fail (docs/api.md "Auth"), over real HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .conftest import Stack, serve_gateway
from .identity import (
    ADMIN,
    PASSWORD,
    bearer,
    claims_of,
    forge,
    forge_hs256,
    fresh_claims,
    kid_of,
    log_in,
    logout,
    refresh,
    sign_up,
    signing_key,
    status_once_revoked,
    tampered,
    unsigned,
    with_cookie,
)

WRONG = "Wrong username, email or password."


async def test_login_sets_the_refresh_cookie_and_returns_a_bearer_token(stack: Stack) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        response = await client.post(
            "/api/v1/login", data={"username": "ann", "password": PASSWORD}
        )

    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"
    assert response.headers["cache-control"] == "no-store"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("refresh_token=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Max-Age=604800" in cookie
    assert "Secure" not in cookie


async def test_login_by_email_in_any_case(stack: Stack) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        response = await client.post(
            "/api/v1/login", data={"username": "ANN@example.com", "password": PASSWORD}
        )

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("username", "password"),
    [("ann", "wrong password"), ("nobody", PASSWORD), ("nobody@x.io", PASSWORD), ("ännä", "ü" * 8)],
)
async def test_bad_credentials_are_one_401(stack: Stack, username: str, password: str) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        response = await client.post(
            "/api/v1/login", data={"username": username, "password": password}
        )

    assert (response.status_code, response.json()) == (401, {"detail": WRONG})
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"username": "ann"},
        {"password": PASSWORD},
        {"username": "", "password": PASSWORD},
        {"username": "a" * 10_000, "password": PASSWORD},
        {"username": "ann", "password": "x" * 100_000},
    ],
)
async def test_malformed_logins_are_422(stack: Stack, form: dict[str, str]) -> None:
    async with stack.client() as client:
        response = await client.post("/api/v1/login", data=form)

    assert response.status_code == 422


async def test_me_with_a_token_and_401_without(stack: Stack) -> None:
    async with stack.client() as client:
        ann = await sign_up(client, "ann")
        access, _ = await log_in(client, "ann")
        me = await client.get("/api/v1/user/me/", headers=bearer(access))
        seed = await client.get("/api/v1/users/me", headers=bearer(access))
        anonymous = await client.get("/api/v1/user/me/")

    assert me.json() == seed.json() == ann
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"


async def test_refresh_rotates_both_tokens(stack: Stack) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        access, cookie = await log_in(client, "ann")
        response = await refresh(client, cookie)
        me = await client.get("/api/v1/user/me/", headers=bearer(response.json()["access_token"]))

    assert response.status_code == 200
    assert response.cookies["refresh_token"] != cookie
    assert response.json()["access_token"] != access
    assert me.status_code == 200


async def test_reused_refresh_token_revokes_its_whole_family(stack: Stack) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        _, stolen = await log_in(client, "ann")
        rotated = await refresh(client, stolen)
        new_access = rotated.json()["access_token"]
        new_cookie = rotated.cookies["refresh_token"]

        replay = await refresh(client, stolen)
        after = await refresh(client, new_cookie)
        me = await status_once_revoked(client, new_access)

    assert (replay.status_code, replay.json()) == (401, {"detail": "Invalid refresh token."})
    assert after.status_code == 401
    assert me == 401


async def test_concurrent_refreshes_of_one_token_let_one_win(stack: Stack) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        _, cookie = await log_in(client, "ann")
        client.cookies.clear()
        results = await asyncio.gather(
            *(client.post("/api/v1/refresh", headers=with_cookie(cookie)) for _ in range(4))
        )

    assert sorted(r.status_code for r in results)[0] == 200
    assert sum(r.status_code == 200 for r in results) == 1


@pytest.mark.parametrize(
    ("cookie", "detail"), [(None, "Refresh token missing."), ("garbage", "Invalid refresh token.")]
)
async def test_refresh_without_a_good_cookie_is_401(
    stack: Stack, cookie: str | None, detail: str
) -> None:
    async with stack.client() as client:
        response = await refresh(client, cookie)

    assert (response.status_code, response.json()) == (401, {"detail": detail})


async def test_logout_revokes_both_tokens_and_clears_the_cookie(stack: Stack) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        access, cookie = await log_in(client, "ann")
        response = await logout(client, access, cookie)
        me = await status_once_revoked(client, access)
        again = await logout(client, access)
        refreshed = await refresh(client, cookie)

    assert (response.status_code, response.json()) == (200, {"message": "Logged out successfully"})
    assert 'refresh_token=""' in response.headers["set-cookie"]
    assert (me, again.status_code, refreshed.status_code) == (401, 401, 401)


async def test_logout_without_the_cookie_still_ends_the_login(stack: Stack) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        access, cookie = await log_in(client, "ann")
        await logout(client, access)
        refreshed = await refresh(client, cookie)

    assert refreshed.status_code == 401


async def test_logout_on_one_gateway_is_honoured_by_another(stack: Stack) -> None:
    # How soon is measured by `make bench` (e2e/bench_revocation.py), not asserted here.
    async with (
        serve_gateway(stack.gateway_settings) as second_url,
        stack.client() as first,
        stack.client(second_url) as second,
    ):
        await sign_up(first, "ann")
        access, _ = await log_in(first, "ann")
        before = (await second.get("/api/v1/user/me/", headers=bearer(access))).status_code
        await logout(first, access)
        after = await status_once_revoked(second, access)

    assert (before, after) == (200, 401)


async def test_jwks_publishes_the_signing_key(stack: Stack) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        access, _ = await log_in(client, "ann")
        response = await client.get("/.well-known/jwks.json")

    keys = response.json()["keys"]
    assert [k["kid"] for k in keys] == [kid_of(access)]
    assert {k["kty"] for k in keys} == {"OKP"}
    assert all("d" not in k for k in keys)


async def _attack(stack: Stack, make_token: object) -> int:
    async with stack.client() as client:
        await sign_up(client, "ann")
        access, cookie = await log_in(client, "ann")
        assert callable(make_token)
        token = make_token(stack, access, cookie)
        response = await client.get("/api/v1/user/me/", headers=bearer(token))
    return response.status_code


def _public_pem(stack: Stack) -> bytes:
    return (
        signing_key(stack.signing_key_file)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


ATTACKS = {
    "alg none": lambda s, a, c: unsigned(claims_of(a), kid=kid_of(a)),
    "hs256 with the public key": lambda s, a, c: forge_hs256(
        _public_pem(s), claims_of(a), kid=kid_of(a)
    ),
    "another key, its own kid": lambda s, a, c: forge(
        Ed25519PrivateKey.generate(), claims_of(a), kid="attacker"
    ),
    "another key, our kid": lambda s, a, c: forge(
        Ed25519PrivateKey.generate(), claims_of(a), kid=kid_of(a)
    ),
    "expired": lambda s, a, c: forge(
        signing_key(s.signing_key_file),
        fresh_claims(claims_of(a), iat=time.time() - 3600, exp=int(time.time()) - 60),
        kid=kid_of(a),
    ),
    "not yet valid": lambda s, a, c: forge(
        signing_key(s.signing_key_file),
        fresh_claims(claims_of(a), nbf=int(time.time()) + 600),
        kid=kid_of(a),
    ),
    "issued in the future": lambda s, a, c: forge(
        signing_key(s.signing_key_file),
        fresh_claims(claims_of(a), iat=time.time() + 600),
        kid=kid_of(a),
    ),
    "wrong audience": lambda s, a, c: forge(
        signing_key(s.signing_key_file), fresh_claims(claims_of(a), aud="other"), kid=kid_of(a)
    ),
    "wrong issuer": lambda s, a, c: forge(
        signing_key(s.signing_key_file), fresh_claims(claims_of(a), iss="evil"), kid=kid_of(a)
    ),
    "no expiry": lambda s, a, c: forge(
        signing_key(s.signing_key_file),
        {k: v for k, v in claims_of(a).items() if k != "exp"},
        kid=kid_of(a),
    ),
    "refresh token as access token": lambda s, a, c: c,
    "tampered payload": lambda s, a, c: tampered(a, sub="1"),
    "garbage": lambda s, a, c: "not.a.token",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_forged_and_misused_tokens_are_refused(stack: Stack, attack: str) -> None:
    assert await _attack(stack, ATTACKS[attack]) == 401


async def test_a_token_re_signed_by_our_key_is_accepted(stack: Stack) -> None:
    """The forging helpers are sound: the attacks above fail for their one change only."""
    status = await _attack(
        stack,
        lambda s, a, c: forge(
            signing_key(s.signing_key_file), fresh_claims(claims_of(a)), kid=kid_of(a)
        ),
    )

    assert status == 200


async def test_access_token_as_refresh_token_is_refused(stack: Stack) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        access, _ = await log_in(client, "ann")
        response = await refresh(client, access)

    assert response.status_code == 401


async def test_tokens_of_a_deleted_user_are_refused(stack: Stack) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        access, cookie = await log_in(client, "ann")
        deleted = await client.delete("/api/v1/user/ann", headers=bearer(access))
        me = await status_once_revoked(client, access)
        refreshed = await refresh(client, cookie)
        login = await client.post("/api/v1/login", data={"username": "ann", "password": PASSWORD})

    assert deleted.json() == {"message": "User deleted"}
    assert (me, refreshed.status_code, login.status_code) == (401, 401, 401)


async def test_token_kept_across_a_username_change_names_the_same_user(stack: Stack) -> None:
    async with stack.client() as client:
        ann = await sign_up(client, "ann")
        access, _ = await log_in(client, "ann")
        await client.patch("/api/v1/user/ann", json={"username": "annie"}, headers=bearer(access))
        me = await client.get("/api/v1/user/me/", headers=bearer(access))
        await sign_up(client, "ann", email="another@example.com")
        me_again = await client.get("/api/v1/user/me/", headers=bearer(access))

    assert me.json()["id"] == me_again.json()["id"] == ann["id"]
    assert me_again.json()["username"] == "annie"


async def test_admin_logs_in_as_a_superuser(stack: Stack) -> None:
    async with stack.client() as client:
        access, _ = await log_in(client, ADMIN[0], ADMIN[1])

    assert claims_of(access)["is_superuser"] is True


async def test_sixteen_sign_ups_then_sixteen_logins_at_once_all_succeed(stack: Stack) -> None:
    names = [f"crowd{i}" for i in range(16)]

    async with stack.client() as client:
        sign_ups = await asyncio.gather(
            *(
                client.post(
                    "/api/v1/user",
                    json={
                        "name": name.title(),
                        "username": name,
                        "email": f"{name}@example.com",
                        "password": PASSWORD,
                    },
                )
                for name in names
            )
        )
        logins = await asyncio.gather(
            *(
                client.post("/api/v1/login", data={"username": name, "password": PASSWORD})
                for name in names
            )
        )

    assert [r.status_code for r in sign_ups] == [201] * 16
    assert [r.status_code for r in logins] == [200] * 16
