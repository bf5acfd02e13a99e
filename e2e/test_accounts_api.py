"""User and tier routes with their owner and superuser checks (docs/api.md "Users", "Tiers")."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.settings import Settings as GatewaySettings

from .conftest import Stack, serve_gateway
from .identity import ann_bob_and_root, bearer, sign_up


async def test_profile_shows_email_to_owner_and_superuser_only(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        views = {
            name: (await client.get("/api/v1/user/ann", headers=who[name])).json()
            for name in ("ann", "bob", "root")
        }
        anonymous = (await client.get("/api/v1/user/ann")).json()

    assert views["ann"]["email"] == views["root"]["email"] == "ann@example.com"
    assert "email" not in views["bob"]
    assert "email" not in anonymous


async def test_bad_token_on_a_public_route_is_401(stack: Stack) -> None:
    async with stack.client() as client:
        response = await client.get("/api/v1/user/root", headers=bearer("nonsense"))

    assert response.status_code == 401


async def test_owner_updates_their_profile(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        response = await client.patch(
            "/api/v1/user/ann",
            json={"name": "Ann B", "profile_image_url": "https://img.example/a.png"},
            headers=who["ann"],
        )
        profile = (await client.get("/api/v1/user/ann")).json()

    assert response.json() == {"message": "User updated"}
    assert (profile["name"], profile["profile_image_url"]) == ("Ann B", "https://img.example/a.png")


@pytest.mark.parametrize(
    ("actor", "method", "status"),
    [
        ("bob", "patch", 403),
        ("bob", "delete", 403),
        ("root", "patch", 200),
        ("root", "delete", 200),
    ],
)
async def test_only_owner_or_superuser_changes_a_user(
    stack: Stack, actor: str, method: str, status: int
) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        kwargs: dict[str, Any] = {"json": {"name": "Changed"}} if method == "patch" else {}
        response = await client.request(
            method.upper(), "/api/v1/user/ann", headers=who[actor], **kwargs
        )
        after = await client.get("/api/v1/user/ann")

    assert response.status_code == status
    if status == 403:
        assert response.json() == {"detail": "You do not have enough privileges."}
        assert after.json()["name"] == "Ann"
    elif method == "patch":
        assert after.json()["name"] == "Changed"
    else:
        assert after.status_code == 404


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": "bob"}, 409),
        ({"email": "bob@example.com"}, 409),
        ({"username": "Not Valid"}, 422),
        ({"profile_image_url": "javascript:alert(1)"}, 422),
        ({"email": "nope"}, 422),
        ({"is_superuser": True}, 422),
    ],
)
async def test_bad_profile_updates(stack: Stack, body: dict[str, Any], status: int) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        response = await client.patch("/api/v1/user/ann", json=body, headers=who["ann"])

    assert response.status_code == status


async def test_changes_to_missing_users_are_404(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        patched = await client.patch(
            "/api/v1/user/nobody", json={"name": "Xy"}, headers=who["root"]
        )
        deleted = await client.delete("/api/v1/user/nobody", headers=who["root"])

    assert (patched.status_code, deleted.status_code) == (404, 404)


async def test_soft_deleted_user_is_404_everywhere(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        await client.delete("/api/v1/user/ann", headers=who["ann"])
        profile = await client.get("/api/v1/user/ann")
        tier = await client.get("/api/v1/user/ann/tier")
        listed = (await client.get("/api/v1/users")).json()

    assert (profile.status_code, tier.status_code) == (404, 404)
    assert "ann" not in [u["username"] for u in listed["data"]]


async def test_superuser_erases_a_user_even_a_soft_deleted_one(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        await client.delete("/api/v1/user/ann", headers=who["ann"])
        by_user = await client.delete("/api/v1/db_user/bob", headers=who["bob"])
        erased = await client.delete("/api/v1/db_user/ann", headers=who["root"])
        again = await sign_up(client, "ann")

    assert by_user.status_code == 403
    assert erased.json() == {"message": "User deleted from the database"}
    assert again["username"] == "ann"


async def test_users_are_listed_a_page_at_a_time_without_emails(stack: Stack) -> None:
    async with stack.client() as client:
        for name in ("ann", "bob", "cid"):
            await sign_up(client, name)
        first = (await client.get("/api/v1/users", params={"items_per_page": 3})).json()
        last = (await client.get("/api/v1/users", params={"page": 2, "items_per_page": 3})).json()

    assert [u["username"] for u in first["data"]] == ["root", "ann", "bob"]
    assert (first["total_count"], first["has_more"], first["page"]) == (4, True, 1)
    assert ([u["username"] for u in last["data"]], last["has_more"]) == (["cid"], False)
    assert all("email" not in u for u in first["data"])


@pytest.mark.parametrize(
    "params", [{"page": 0}, {"items_per_page": 0}, {"items_per_page": 101}, {"page": "x"}]
)
async def test_out_of_range_pagination_is_422(stack: Stack, params: dict[str, Any]) -> None:
    async with stack.client() as client:
        users = await client.get("/api/v1/users", params=params)
        tiers = await client.get("/api/v1/tiers", params=params)

    assert (users.status_code, tiers.status_code) == (422, 422)


async def test_tier_lifecycle_by_a_superuser(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        created = await client.post("/api/v1/tier", json={"name": "gold"}, headers=who["root"])
        duplicate = await client.post("/api/v1/tier", json={"name": "gold"}, headers=who["root"])
        renamed = await client.patch(
            "/api/v1/tier/gold", json={"name": "platinum"}, headers=who["root"]
        )
        read = await client.get("/api/v1/tier/platinum")
        listed = (await client.get("/api/v1/tiers")).json()
        deleted = await client.delete("/api/v1/tier/platinum", headers=who["root"])
        gone = await client.get("/api/v1/tier/platinum")

    assert created.status_code == 201
    assert set(created.json()) == {"id", "name", "created_at"}
    assert (duplicate.status_code, duplicate.json()) == (409, {"detail": "Tier Name not available"})
    assert renamed.json() == {"message": "Tier updated"}
    assert read.json()["id"] == created.json()["id"]
    assert [t["name"] for t in listed["data"]] == ["free", "platinum"]
    assert deleted.json() == {"message": "Tier deleted"}
    assert (gone.status_code, gone.json()) == (404, {"detail": "Tier not found"})


async def test_tier_changes_need_a_superuser(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        created = await client.post("/api/v1/tier", json={"name": "gold"}, headers=who["ann"])
        anonymous = await client.post("/api/v1/tier", json={"name": "gold"})
        renamed = await client.patch("/api/v1/tier/free", json={"name": "x"}, headers=who["ann"])
        deleted = await client.delete("/api/v1/tier/free", headers=who["ann"])

    assert (created.status_code, anonymous.status_code) == (403, 401)
    assert (renamed.status_code, deleted.status_code) == (403, 403)


async def test_tier_in_use_cannot_be_deleted(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        response = await client.delete("/api/v1/tier/free", headers=who["root"])

    assert response.status_code == 409


async def test_user_tier_is_read_and_changed_by_a_superuser(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        gold = (
            await client.post("/api/v1/tier", json={"name": "gold"}, headers=who["root"])
        ).json()
        before = (await client.get("/api/v1/user/ann/tier")).json()
        by_user = await client.patch(
            "/api/v1/user/ann/tier", json={"tier_id": gold["id"]}, headers=who["ann"]
        )
        changed = await client.patch(
            "/api/v1/user/ann/tier", json={"tier_id": gold["id"]}, headers=who["root"]
        )
        missing = await client.patch(
            "/api/v1/user/ann/tier", json={"tier_id": 999}, headers=who["root"]
        )
        after = (await client.get("/api/v1/user/ann/tier")).json()

    assert before["tier_name"] == "free"
    assert by_user.status_code == 403
    assert changed.json() == {"message": "User ann Tier updated"}
    assert missing.status_code == 404
    assert (after["tier_id"], after["tier_name"]) == (gold["id"], "gold")
    assert after["tier_created_at"] is not None


async def test_docs_in_staging_are_for_superusers_only(stack: Stack) -> None:
    settings = stack.gateway_settings.model_copy(update={"environment": "staging"})
    assert isinstance(settings, GatewaySettings)
    async with serve_gateway(settings) as url, stack.client(url) as client:
        who = await ann_bob_and_root(client)
        statuses = [
            (await client.get("/openapi.json", headers=headers)).status_code
            for headers in ({}, who["ann"], who["root"])
        ]

    assert statuses == [401, 403, 200]


async def test_sign_up_in_staging_sets_a_secure_cookie(stack: Stack) -> None:
    settings = stack.gateway_settings.model_copy(update={"environment": "staging"})
    async with serve_gateway(settings) as url, stack.client(url) as client:
        await sign_up(client, "ann")
        response = await client.post(
            "/api/v1/login", data={"username": "ann", "password": "correct horse"}
        )

    assert "Secure" in response.headers["set-cookie"]


async def test_concurrent_sign_ups_and_logins_never_500(stack: Stack) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        responses = await asyncio.gather(
            *(
                client.post("/api/v1/login", data={"username": "ann", "password": "correct horse"})
                for _ in range(8)
            ),
            *(
                client.post(
                    "/api/v1/user",
                    json={
                        "name": "Xx",
                        "username": f"u{i}",
                        "email": "same@x.io",
                        "password": "12345678",
                    },
                )
                for i in range(8)
            ),
        )

    assert all(r.status_code < 500 for r in responses)


async def test_missing_users_and_tiers_are_404_and_taken_names_409(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        root = who["root"]
        await client.post("/api/v1/tier", json={"name": "gold"}, headers=root)
        statuses = {
            "erase missing user": (await client.delete("/api/v1/db_user/nobody", headers=root)),
            "rename missing tier": (
                await client.patch("/api/v1/tier/none", json={"name": "x"}, headers=root)
            ),
            "rename to a taken name": (
                await client.patch("/api/v1/tier/gold", json={"name": "free"}, headers=root)
            ),
            "delete missing tier": (await client.delete("/api/v1/tier/none", headers=root)),
            "tier of a missing user": (await client.get("/api/v1/user/nobody/tier")),
            "move a missing user": (
                await client.patch("/api/v1/user/nobody/tier", json={"tier_id": 1}, headers=root)
            ),
        }

    assert {name: response.status_code for name, response in statuses.items()} == {
        "erase missing user": 404,
        "rename missing tier": 404,
        "rename to a taken name": 409,
        "delete missing tier": 404,
        "tier of a missing user": 404,
        "move a missing user": 404,
    }
