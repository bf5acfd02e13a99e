"""Input no handler can serve is a 422 naming what is wrong, never a 500 (issue #12): numbers
beyond the protos' integer ranges, text that no store can hold (NUL, lone surrogates)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from .conftest import Stack
from .identity import ann_bob_and_root

TOO_BIG_64 = 2**63
TOO_SMALL_64 = -(2**63) - 1


def _problem(response: httpx.Response) -> str:
    """The 422's first error location, from a body that is valid JSON."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    detail = json.loads(response.content)["detail"]
    return ".".join(str(part) for part in detail[0]["loc"])


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/api/v1/users?page=2147483648", "query.page"),
        (f"/api/v1/ann/post/{TOO_BIG_64}", "path.post_id"),
        (f"/api/v1/ann/post/{TOO_SMALL_64}", "path.post_id"),
        (f"/api/v1/tier/free/rate_limit/{TOO_BIG_64}", "path.rule_id"),
        ("/api/v1/tiers?page=99999999999", "query.page"),
    ],
)
async def test_numbers_beyond_the_protos_ranges_are_422(
    stack: Stack, path: str, where: str
) -> None:
    async with stack.client() as client:
        response = await client.get(path)

    assert _problem(response) == where


async def test_writes_with_numbers_beyond_int64_are_422_and_change_nothing(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        tier = await client.patch(
            "/api/v1/user/ann/tier", json={"tier_id": TOO_BIG_64}, headers=who["root"]
        )
        rule = await client.post(
            "/api/v1/tier/free/rate_limit",
            json={"path": "/api/v1/user/me/", "limit": TOO_BIG_64, "period": 60},
            headers=who["root"],
        )
        period = await client.post(
            "/api/v1/tier/free/rate_limit",
            json={"path": "/api/v1/user/me/", "limit": 5, "period": TOO_BIG_64},
            headers=who["root"],
        )
        rules = (await client.get("/api/v1/tier/free/rate_limits", headers=who["root"])).json()
        ann_tier = (await client.get("/api/v1/user/ann/tier")).json()

    assert _problem(tier) == "body.tier_id"
    assert _problem(rule) == "body.limit"
    assert _problem(period) == "body.period"
    assert rules["data"] == []
    assert ann_tier["tier_name"] == "free"


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "nul\x00byte"])
async def test_text_no_store_can_hold_is_422_with_a_readable_answer(
    stack: Stack, text: str
) -> None:
    # Sent as JSON escapes (json.dumps writes them so): what a client can really send.
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        sign_up = await client.post(
            "/api/v1/user",
            content=json.dumps(
                {
                    "name": text,
                    "username": "carl",
                    "email": "c@example.com",
                    "password": "p4ssw0rd!",
                }
            ),
            headers={"content-type": "application/json"},
        )
        post = await client.post(
            "/api/v1/ann/post",
            content=json.dumps({"title": "Hello", "text": text}),
            headers={**who["ann"], "content-type": "application/json"},
        )
        carl = await client.get("/api/v1/user/carl")
        posts = (await client.get("/api/v1/ann/posts")).json()

    assert _problem(sign_up) == "body.name"
    assert _problem(post) == "body.text"
    assert carl.status_code == 404
    assert posts["total_count"] == 0


async def test_nul_in_a_form_or_a_path_is_refused(stack: Stack) -> None:
    async with stack.client() as client:
        login = await client.post(
            "/api/v1/login", data={"username": "ann\x00", "password": "whatever1"}
        )
        at_the_edge = await client.get("/api/v1/tier/fr%00ee")
    async with stack.client(stack.gateway_url) as client:
        at_the_gateway = await client.get("/api/v1/tier/fr%00ee")

    assert _problem(login) == "body.username"
    # Envoy refuses a NUL in a path itself; a gateway reached without it, with its own 422.
    assert at_the_edge.status_code == 400
    assert _problem(at_the_gateway) == "path.name"


async def test_text_beyond_the_basic_plane_is_still_text(stack: Stack) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        created = await client.post(
            "/api/v1/ann/post", json={"title": "Emoji", "text": "\U0001f600 ok"}, headers=who["ann"]
        )
        read = await client.get(f"/api/v1/ann/post/{created.json()['id']}")

    assert created.status_code == 201, created.text
    assert read.json()["text"] == "\U0001f600 ok"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/api/v1/tier/free", "DELETE, GET, PATCH"),
        ("PUT", "/api/v1/tier/free", "DELETE, GET, PATCH"),
        ("PUT", "/api/v1/ann/post/1", "DELETE, GET, PATCH"),
        ("POST", "/api/v1/user/ann", "DELETE, GET, PATCH"),
        ("PUT", "/api/v1/tier/free/rate_limit/1", "DELETE, GET, PATCH"),
        ("DELETE", "/api/v1/users", "GET"),
    ],
)
async def test_a_method_a_path_lacks_is_405_naming_every_method_it_has(
    stack: Stack, method: str, path: str, allowed: str
) -> None:
    async with stack.client() as client:
        response = await client.request(method, path)

    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allowed


async def test_a_body_over_a_mebibyte_is_413_at_the_gateway_itself(stack: Stack) -> None:
    big = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    async with stack.client(stack.gateway_url) as client:
        declared = await client.post(
            "/api/v1/user", content=big, headers={"content-type": "application/json"}
        )
        chunked = await client.post(
            "/api/v1/user", content=chunks(), headers={"content-type": "application/json"}
        )
        under = await client.post(
            "/api/v1/user",
            content=b'{"name": "' + b"x" * (1000 * 1024) + b'"}',
            headers={"content-type": "application/json"},
        )

    assert (declared.status_code, chunked.status_code) == (413, 413)
    assert declared.json() == {"detail": "Request body larger than 1048576 bytes."}
    assert "x-request-id" in declared.headers
    assert under.status_code == 422
