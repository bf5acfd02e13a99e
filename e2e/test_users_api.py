"""The vertical slice over real HTTP -> gRPC -> SQL: sign up and read a user (docs/api.md "Users")."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from .conftest import Stack

ANN = {
    "name": "Ann Lee",
    "username": "ann",
    "email": "ann@example.com",
    "password": "correct horse",
}


async def _sign_up(client: httpx.AsyncClient, **overrides: Any) -> httpx.Response:
    return await client.post("/api/v1/user", json={**ANN, **overrides})


async def test_sign_up_returns_201_with_the_user_and_its_email(stack: Stack) -> None:
    async with stack.client() as client:
        response = await _sign_up(client)

    assert response.status_code == 201
    assert response.json() == {
        "id": 2,
        "name": "Ann Lee",
        "username": "ann",
        "email": "ann@example.com",
        "profile_image_url": None,
        "tier_id": 1,
    }


async def test_public_profile_has_no_email(stack: Stack) -> None:
    async with stack.client() as client:
        await _sign_up(client)
        response = await client.get("/api/v1/user/ann")

    assert response.status_code == 200
    assert response.json() == {
        "id": 2,
        "name": "Ann Lee",
        "username": "ann",
        "profile_image_url": None,
        "tier_id": 1,
    }


@pytest.mark.parametrize("username", ["nobody", "NotValid", "x" * 300, "ann%20lee"])
async def test_unknown_user_is_404(stack: Stack, username: str) -> None:
    async with stack.client() as client:
        response = await client.get(f"/api/v1/user/{username}")

    assert response.status_code == 404
    assert response.json() == {"detail": "User not found"}
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"email": "other@example.com"}, "Username not available"),
        ({"username": "other"}, "Email is already registered"),
        ({"username": "other", "email": "ANN@Example.COM"}, "Email is already registered"),
    ],
)
async def test_duplicates_are_409(stack: Stack, overrides: dict[str, str], detail: str) -> None:
    async with stack.client() as client:
        await _sign_up(client)
        response = await _sign_up(client, **overrides)

    assert response.status_code == 409
    assert response.json() == {"detail": detail}


async def test_concurrent_sign_ups_with_one_email_give_one_201_and_409s(stack: Stack) -> None:
    async with stack.client() as client:
        responses = await asyncio.gather(
            *(_sign_up(client, username=f"user{i}") for i in range(10))
        )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 9
    assert {r.json()["detail"] for r in responses if r.status_code == 409} == {
        "Email is already registered"
    }


async def test_concurrent_sign_ups_with_one_username_give_one_201(stack: Stack) -> None:
    async with stack.client() as client:
        responses = await asyncio.gather(
            *(_sign_up(client, email=f"ann{i}@example.com") for i in range(2))
        )

    assert sorted(r.status_code for r in responses) == [201, 409]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "A"}, "name"),
        ({"name": "x" * 31}, "name"),
        ({"username": "a"}, "username"),
        ({"username": "Ann"}, "username"),
        ({"username": "ann lee"}, "username"),
        ({"username": "x" * 21}, "username"),
        ({"email": "not-an-email"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "x" * 129}, "password"),
        ({"name": None}, "name"),
        ({"username": 12345}, "username"),
        ({"is_superuser": True}, "is_superuser"),
    ],
)
async def test_invalid_sign_up_is_422_naming_the_field(
    stack: Stack, overrides: dict[str, Any], field: str
) -> None:
    async with stack.client() as client:
        response = await _sign_up(client, **overrides)

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["body", field]]


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"name": "\xff\xfe"}', b"{" * 10_000],
)
async def test_malformed_bodies_are_client_errors_never_500(stack: Stack, body: bytes) -> None:
    async with stack.client() as client:
        response = await client.post(
            "/api/v1/user", content=body, headers={"content-type": "application/json"}
        )

    assert response.status_code in {400, 422}
    assert response.headers["cache-control"] == "no-store"


async def test_unicode_name_and_email_are_kept(stack: Stack) -> None:
    async with stack.client() as client:
        response = await _sign_up(client, name="Zoë 山田", email="Zoë@Bücher.example")

    assert response.status_code == 201
    assert (response.json()["name"], response.json()["email"]) == ("Zoë 山田", "zoë@bücher.example")


async def test_a_callers_request_id_survives_the_edge_unless_it_has_a_bad_shape(
    stack: Stack,
) -> None:
    bad = ["a b", "<script>", "x" * 129]
    async with stack.client() as client:
        given = await client.get("/api/v1/user/nobody", headers={"X-Request-ID": "abc-123"})
        made = await client.get("/api/v1/user/nobody")
        replaced = [
            await client.get("/api/v1/user/nobody", headers={"X-Request-ID": value})
            for value in bad
        ]
    async with stack.client(stack.gateway_url) as inside:
        internal = await inside.get("/api/v1/user/nobody", headers={"X-Request-ID": "abc-123"})
        fresh = await inside.get("/api/v1/user/nobody")

    # Through Envoy: the caller's id kept, a fresh UUID where none was sent.
    assert given.headers["x-request-id"] == "abc-123"
    assert str(uuid.UUID(made.headers["x-request-id"])) == made.headers["x-request-id"]
    # One of a bad shape is never echoed: one fresh id in its place (the gateway's).
    for answer, value in zip(replaced, bad, strict=True):
        [fresh_id] = answer.headers.get_list("x-request-id")
        assert fresh_id != value
        assert len(fresh_id) == 32
    # Behind the edge, the gateway keeps the id it is given, or makes one.
    assert internal.headers["x-request-id"] == "abc-123"
    assert len(fresh.headers["x-request-id"]) == 32


async def test_users_service_down_is_503_not_500(stack: Stack) -> None:
    await stack.stop("users")

    async with stack.client() as client:
        response = await client.get("/api/v1/user/ann")

    assert response.status_code == 503
    assert response.json() == {"detail": "Service unavailable"}
