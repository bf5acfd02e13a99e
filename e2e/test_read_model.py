"""The gateways' read model seen from outside: a write acknowledged by one gateway is read at once
through another, which had a copy of the old answer."""

from __future__ import annotations

from .conftest import Stack, serve_gateway
from .identity import bearer, log_in, sign_up


async def test_a_write_through_one_gateway_is_read_at_once_through_another(stack: Stack) -> None:
    async with (
        serve_gateway(stack.gateway_settings) as second_url,
        stack.client(stack.gateway_url) as first,
        stack.client(second_url) as second,
    ):
        await sign_up(first, "ann")
        access, _ = await log_in(first, "ann")
        auth = bearer(access)
        seen = []
        for n in range(15):
            # The second gateway holds copies of these answers now.
            await second.get("/api/v1/user/me/", headers=auth)
            await second.get("/api/v1/user/ann")
            await second.get("/api/v1/ann/posts")

            renamed = await first.patch("/api/v1/user/ann", json={"name": f"Ann {n}"}, headers=auth)
            posted = await first.post(
                "/api/v1/ann/post", json={"title": f"Post {n}", "text": "Hello."}, headers=auth
            )
            assert (renamed.status_code, posted.status_code) == (200, 201)

            me = (await second.get("/api/v1/user/me/", headers=auth)).json()
            public = (await second.get("/api/v1/user/ann")).json()
            posts = (await second.get("/api/v1/ann/posts")).json()
            seen.append(
                (me["name"], public["name"], posts["total_count"], posts["data"][0]["title"])
            )

    assert seen == [(f"Ann {n}", f"Ann {n}", n + 1, f"Post {n}") for n in range(15)]
