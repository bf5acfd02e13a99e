"""Post routes and HTTP caching over real HTTP (docs/api.md "Posts", Cache-Control, ETag, 304)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import Stack
from .identity import ann_bob_and_root, sign_up


async def _write(
    client: httpx.AsyncClient, headers: dict[str, str], title: str = "Hello"
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/ann/post", json={"title": title, "text": "Body"}, headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_post_lifecycle(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        created = await _write(client, who["ann"])
        read = await client.get(f"/api/v1/ann/post/{created['id']}")
        updated = await client.patch(
            f"/api/v1/ann/post/{created['id']}", json={"title": "Edited"}, headers=who["ann"]
        )
        listed = (await client.get("/api/v1/ann/posts")).json()
        deleted = await client.delete(f"/api/v1/ann/post/{created['id']}", headers=who["ann"])
        gone = await client.get(f"/api/v1/ann/post/{created['id']}")

    assert set(created) == {"id", "title", "text", "media_url", "created_by_user_id", "created_at"}
    assert read.json() == created
    assert updated.json() == {"message": "Post updated"}
    assert [p["title"] for p in listed["data"]] == ["Edited"]
    assert (listed["total_count"], listed["has_more"]) == (1, False)
    assert deleted.json() == {"message": "Post deleted"}
    assert (gone.status_code, gone.json()) == (404, {"detail": "Post not found"})


async def test_another_users_update_and_delete_are_403_and_change_nothing(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        post = await _write(client, who["ann"])
        patched = await client.patch(
            f"/api/v1/ann/post/{post['id']}", json={"title": "Mine"}, headers=who["bob"]
        )
        via_own_path = await client.patch(
            f"/api/v1/bob/post/{post['id']}", json={"title": "Mine"}, headers=who["bob"]
        )
        deleted = await client.delete(f"/api/v1/ann/post/{post['id']}", headers=who["bob"])
        written_as_ann = await client.post(
            "/api/v1/ann/post", json={"title": "Fake", "text": "x"}, headers=who["bob"]
        )
        after = (await client.get(f"/api/v1/ann/post/{post['id']}")).json()

    assert (patched.status_code, deleted.status_code, written_as_ann.status_code) == (403, 403, 403)
    assert via_own_path.status_code == 404
    assert after == post


async def test_superuser_edits_and_erases_any_post(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        post = await _write(client, who["ann"])
        by_ann = await client.delete(f"/api/v1/ann/db_post/{post['id']}", headers=who["ann"])
        patched = await client.patch(
            f"/api/v1/ann/post/{post['id']}", json={"text": "Moderated"}, headers=who["root"]
        )
        moderated = await client.get(f"/api/v1/ann/post/{post['id']}")
        erased = await client.delete(f"/api/v1/ann/db_post/{post['id']}", headers=who["root"])
        gone = await client.get(f"/api/v1/ann/post/{post['id']}")
        erased_again = await client.delete(f"/api/v1/ann/db_post/{post['id']}", headers=who["root"])

    assert by_ann.status_code == 403
    assert patched.status_code == 200
    assert moderated.json() == {**post, "text": "Moderated"}
    assert erased.json() == {"message": "Post deleted from the database"}
    assert gone.status_code == 404
    # Erased, not hidden: not even a superuser finds it again.
    assert erased_again.status_code == 404


async def test_posts_are_listed_newest_first_in_pages(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        for title in ("one", "two", "three"):
            await _write(client, who["ann"], title)
        page = (await client.get("/api/v1/ann/posts", params={"items_per_page": 2})).json()
        missing = await client.get("/api/v1/nobody/posts")

    assert [p["title"] for p in page["data"]] == ["three", "two"]
    assert (page["total_count"], page["has_more"]) == (3, True)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"title": "x", "text": "Body"},
        {"title": "Hello", "text": ""},
        {"title": "Hello", "text": "x" * 63207},
        {"title": "Hello", "text": "Body", "media_url": "javascript:x"},
        {"title": "Hello", "text": "Body", "created_by_user_id": 1},
    ],
)
async def test_invalid_posts_are_422(stack: Stack, body: dict[str, Any]) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        response = await client.post("/api/v1/ann/post", json=body, headers=who["ann"])

    assert response.status_code == 422


async def test_writing_needs_a_token(stack: Stack) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        response = await client.post("/api/v1/ann/post", json={"title": "Hello", "text": "Body"})

    assert response.status_code == 401


async def test_anonymous_reads_are_public_with_an_etag_and_304(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        await _write(client, who["ann"])
        first = await client.get("/api/v1/ann/posts")
        again = await client.get(
            "/api/v1/ann/posts", headers={"If-None-Match": first.headers["etag"]}
        )
        await _write(client, who["ann"], "Second")
        changed = await client.get(
            "/api/v1/ann/posts", headers={"If-None-Match": first.headers["etag"]}
        )

    assert first.headers["cache-control"] == "public, max-age=60"
    assert "Authorization" in first.headers["vary"]
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["x-request-id"]
    assert changed.status_code == 200
    assert changed.headers["etag"] != first.headers["etag"]


async def test_authenticated_reads_are_private_and_revalidated(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        me = await client.get("/api/v1/user/me/", headers=who["ann"])
        again = await client.get(
            "/api/v1/user/me/", headers={**who["ann"], "If-None-Match": me.headers["etag"]}
        )

    assert me.headers["cache-control"] == "private, no-cache"
    assert again.status_code == 304


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("POST", "/api/v1/login", {"username": "ann", "password": "correct horse"}),
        ("POST", "/api/v1/login", {"username": "ann", "password": "wrong password"}),
        ("GET", "/api/v1/nobody/posts", None),
        ("GET", "/api/v1/user/nobody", None),
    ],
)
async def test_logins_and_errors_are_never_stored(
    stack: Stack, method: str, path: str, data: dict[str, str] | None
) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        response = await client.request(method, path, data=data)

    assert response.headers["cache-control"] == "no-store"


async def test_reserved_names_cannot_be_usernames(stack: Stack) -> None:
    async with stack.client() as client:
        response = await client.post(
            "/api/v1/user",
            json={"name": "Users", "username": "users", "email": "u@x.io", "password": "12345678"},
        )

    assert response.status_code == 409
