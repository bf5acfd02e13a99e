"""Rate limiting over real HTTP: headers, 429, subjects, proxies, rules and their routes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from meshplate_testing.windows import clear_of_window_edge, seconds_off_window_edge

from .conftest import Stack, serve_gateway
from .identity import ADMIN, PASSWORD, bearer, log_in, sign_up


async def _admin(client: httpx.AsyncClient) -> dict[str, str]:
    access, _ = await log_in(client, *ADMIN)
    return bearer(access)


async def _rule(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    path: str,
    limit: int,
    period: int = 60,
    tier: str = "free",
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/tier/{tier}/rate_limit",
        json={"path": path, "limit": limit, "period": period},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_every_api_answer_carries_the_rate_limit_headers(stack: Stack) -> None:
    async with stack.client() as client:
        found = await client.get("/api/v1/users")
        missing = await client.get("/api/v1/user/nobody")
        health = await client.get("/health")

    for response in (found, missing):
        assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(
            response.headers
        )
    assert "x-ratelimit-limit" not in health.headers


async def test_over_the_limit_is_429_with_retry_after(stack: Stack) -> None:
    async with stack.client() as client:
        admin = await _admin(client)
        await sign_up(client, "ann")
        await _rule(client, admin, "/api/v1/user/me/", 2)
        access, _ = await log_in(client, "ann")
        answers = [await client.get("/api/v1/user/me/", headers=bearer(access)) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["1", "0", "0"]
    assert answers[2].json() == {"detail": "Rate limit exceeded."}
    assert 1 <= int(answers[2].headers["retry-after"]) <= 60
    assert answers[2].headers["cache-control"] == "no-store"


async def test_200_concurrent_requests_against_50_admit_exactly_50(stack: Stack) -> None:
    async with stack.client() as client:
        admin = await _admin(client)
        await sign_up(client, "ann")
        await _rule(client, admin, "/api/v1/user/me/", 50)
        access, _ = await log_in(client, "ann")
        answers = await asyncio.gather(
            *(client.get("/api/v1/user/me/", headers=bearer(access)) for _ in range(200))
        )

    assert sorted({a.status_code for a in answers}) == [200, 429]
    assert sum(a.status_code == 200 for a in answers) == 50


async def test_two_gateways_and_two_ratelimit_processes_share_one_budget(stack: Stack) -> None:
    async with stack.another_ratelimit() as port:
        settings = stack.gateway_settings.model_copy(update={"ratelimit_addr": f"127.0.0.1:{port}"})
        async with (
            serve_gateway(settings) as second_url,
            stack.client() as first,
            stack.client(second_url) as second,
        ):
            admin = await _admin(first)
            await sign_up(first, "ann")
            await _rule(first, admin, "/api/v1/user/me/", 30)
            access, _ = await log_in(first, "ann")
            answers = await asyncio.gather(
                *(c.get("/api/v1/user/me/", headers=bearer(access)) for c in [first, second] * 40)
            )

    assert sum(a.status_code == 200 for a in answers) == 30


async def test_anonymous_callers_get_the_global_default_by_address(stack: Stack) -> None:
    async with stack.client() as client:
        admin = await _admin(client)
        await _rule(client, admin, "*", 1, tier="free")
        client.headers.pop("authorization", None)
        answers = [await client.get("/api/v1/tiers") for _ in range(4)]

    assert [a.status_code for a in answers] == [200] * 4
    assert {a.headers["x-ratelimit-limit"] for a in answers} == {"10000"}
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["9999", "9998", "9997", "9996"]


async def _remaining_after(url: str, stack: Stack, forwarded_for: list[str]) -> list[int]:
    async with stack.client(url) as client:
        return [
            int(
                (await client.get("/api/v1/users", headers={"X-Forwarded-For": hop})).headers[
                    "x-ratelimit-remaining"
                ]
            )
            for hop in forwarded_for
        ]


async def test_forwarded_for_counts_only_from_a_trusted_proxy(stack: Stack) -> None:
    hops = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    untrusted = stack.gateway_settings.model_copy(update={"trusted_proxies": []})
    trusting = stack.gateway_settings.model_copy(update={"trusted_proxies": ["127.0.0.1/32"]})

    async with serve_gateway(untrusted) as url:
        spoofed = await _remaining_after(url, stack, hops)
    async with serve_gateway(trusting) as url:
        forwarded = await _remaining_after(url, stack, [f"{hop}, 10.9.9.9" for hop in hops])

    assert spoofed == [9999, 9998, 9997]
    assert forwarded == [9999, 9998, 9997]


async def test_a_client_cannot_pick_an_address_inside_the_trusted_ranges(stack: Stack) -> None:
    # Behind a load balancer that hides clients, the hop Envoy appends may itself lie inside a
    # trusted range; what the client wrote before it still counts for nothing.
    trusting = stack.gateway_settings.model_copy(
        update={"trusted_proxies": ["127.0.0.1/32", "10.0.0.0/8"]}
    )
    forged = [f"10.0.3.{n}, 10.0.0.7" for n in range(3)]

    async with serve_gateway(trusting) as url:
        remaining = await _remaining_after(url, stack, forged)

    assert remaining == [9999, 9998, 9997]


async def test_each_client_behind_a_trusted_proxy_has_its_own_budget(stack: Stack) -> None:
    trusting = stack.gateway_settings.model_copy(update={"trusted_proxies": ["127.0.0.1"]})

    async with serve_gateway(trusting) as url:
        remaining = await _remaining_after(url, stack, ["10.0.1.1", "10.0.1.2", "10.0.1.3"])

    assert remaining == [9999, 9999, 9999]


async def test_limits_follow_the_tier_rules(stack: Stack) -> None:
    async with stack.client() as client:
        admin = await _admin(client)
        await client.post("/api/v1/tier", json={"name": "pro"}, headers=admin)
        await _rule(client, admin, "/api/v1/user/me/", 2, tier="free")
        await _rule(client, admin, "/api/v1/user/me/", 5, tier="pro")
        await sign_up(client, "ann")
        await sign_up(client, "bob")
        pro = (await client.get("/api/v1/tier/pro")).json()["id"]
        await client.patch("/api/v1/user/bob/tier", json={"tier_id": pro}, headers=admin)
        ann, _ = await log_in(client, "ann")
        bob, _ = await log_in(client, "bob")
        ann_limit = (await client.get("/api/v1/user/me/", headers=bearer(ann))).headers[
            "x-ratelimit-limit"
        ]
        bob_limit = (await client.get("/api/v1/user/me/", headers=bearer(bob))).headers[
            "x-ratelimit-limit"
        ]

    assert (ann_limit, bob_limit) == ("2", "5")


async def test_a_rule_change_governs_the_next_request(stack: Stack) -> None:
    async with stack.client() as client:
        admin = await _admin(client)
        await sign_up(client, "ann")
        rule = await _rule(client, admin, "/api/v1/user/me/", 100)
        access, _ = await log_in(client, "ann")
        before = await client.get("/api/v1/user/me/", headers=bearer(access))
        await client.patch(
            f"/api/v1/tier/free/rate_limit/{rule['id']}", json={"limit": 1}, headers=admin
        )
        after = await client.get("/api/v1/user/me/", headers=bearer(access))

    assert (before.status_code, after.status_code) == (200, 429)


async def test_repeated_login_attempts_are_throttled(stack: Stack) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        failures = [
            (
                await client.post(
                    "/api/v1/login", data={"username": "ann", "password": "wrong password"}
                )
            ).status_code
            for _ in range(10)
        ]
        blocked = await client.post("/api/v1/login", data={"username": "ann", "password": PASSWORD})
        other_user = await client.post(
            "/api/v1/login", data={"username": "bob", "password": PASSWORD}
        )

    assert failures == [401] * 10
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) >= 1
    assert other_user.status_code == 401


async def test_only_failed_logins_count_toward_the_throttle(stack: Stack) -> None:
    # API.md: "429 after repeated failures". Every attempt is counted before the password is
    # checked (parallel guesses cannot outrun the count); a successful one gives its place back.
    async with stack.client() as client:
        await sign_up(client, "ann")

        async def log_in_once(password: str) -> int:
            form = {"username": "ann", "password": password}
            return (await client.post("/api/v1/login", data=form)).status_code

        successes = [await log_in_once(PASSWORD) for _ in range(25)]
        mixed = [await log_in_once(p) for p in ["wrong password"] * 9 + [PASSWORD] * 3]
        last_failure = await log_in_once("wrong password")
        refused = await log_in_once(PASSWORD)

    assert successes == [200] * 25
    assert mixed == [401] * 9 + [200] * 3
    assert (last_failure, refused) == (401, 429)


async def test_rule_routes(stack: Stack) -> None:
    async with stack.client() as client:
        admin = await _admin(client)
        await sign_up(client, "ann")
        ann, _ = await log_in(client, "ann")
        created = await _rule(client, admin, "api_v1_tasks_task", 5, 86400)
        duplicate = await client.post(
            "/api/v1/tier/free/rate_limit",
            json={"path": "/api/v1/tasks/task", "limit": 1, "period": 1},
            headers=admin,
        )
        by_user = await client.post(
            "/api/v1/tier/free/rate_limit",
            json={"path": "/x", "limit": 1, "period": 1},
            headers=bearer(ann),
        )
        bad = await client.post(
            "/api/v1/tier/free/rate_limit",
            json={"path": "/x", "limit": 0, "period": 1},
            headers=admin,
        )
        no_tier = await client.post(
            "/api/v1/tier/gold/rate_limit",
            json={"path": "/x", "limit": 1, "period": 1},
            headers=admin,
        )
        listed = (await client.get("/api/v1/tier/free/rate_limits")).json()
        one = await client.get(f"/api/v1/tier/free/rate_limit/{created['id']}")
        patched = await client.patch(
            f"/api/v1/tier/free/rate_limit/{created['id']}", json={"limit": 7}, headers=admin
        )
        of_user = await client.get("/api/v1/user/ann/rate_limits", headers=admin)
        of_user_by_user = await client.get("/api/v1/user/ann/rate_limits", headers=bearer(ann))
        deleted = await client.delete(
            f"/api/v1/tier/free/rate_limit/{created['id']}", headers=admin
        )
        gone = await client.get(f"/api/v1/tier/free/rate_limit/{created['id']}")

    assert created == {
        "id": created["id"],
        "tier_id": 1,
        "name": created["name"],
        "path": "/api/v1/tasks/task",
        "limit": 5,
        "period": 86400,
        "algorithm": "sliding_window",
    }
    assert (duplicate.status_code, by_user.status_code, bad.status_code, no_tier.status_code) == (
        409,
        403,
        422,
        404,
    )
    assert [r["id"] for r in listed["data"]] == [created["id"]]
    assert one.json() == created
    assert patched.json() == {"message": "Rate Limit updated"}
    assert [r["limit"] for r in of_user.json()["tier_rate_limits"]] == [7]
    assert of_user_by_user.status_code == 403
    assert deleted.json() == {"message": "Rate Limit deleted"}
    assert gone.status_code == 404


@pytest.mark.parametrize(
    "body", [{"path": "/x"}, {"path": "/x", "limit": 1, "period": 1, "extra": 1}]
)
async def test_malformed_rules_are_422(stack: Stack, body: dict[str, Any]) -> None:
    async with stack.client() as client:
        admin = await _admin(client)
        response = await client.post("/api/v1/tier/free/rate_limit", json=body, headers=admin)

    assert response.status_code == 422


async def test_a_tier_change_applies_without_a_new_token(stack: Stack) -> None:
    async with stack.client() as client:
        admin = await _admin(client)
        await client.post("/api/v1/tier", json={"name": "pro"}, headers=admin)
        await _rule(client, admin, "/api/v1/user/me/", 2, tier="free")
        await _rule(client, admin, "/api/v1/user/me/", 50, tier="pro")
        await sign_up(client, "ann")
        access, _ = await log_in(client, "ann")
        before = (await client.get("/api/v1/user/me/", headers=bearer(access))).headers
        pro = (await client.get("/api/v1/tier/pro")).json()["id"]
        await client.patch("/api/v1/user/ann/tier", json={"tier_id": pro}, headers=admin)
        limit = before["x-ratelimit-limit"]
        async with asyncio.timeout(5):
            while limit != "50":
                response = await client.get("/api/v1/user/me/", headers=bearer(access))
                limit = response.headers["x-ratelimit-limit"]

    assert before["x-ratelimit-limit"] == "2"
    assert limit == "50"


async def test_a_fixed_window_rule_resets_at_a_known_instant(stack: Stack) -> None:
    async with stack.client() as client:
        admin = await _admin(client)
        await sign_up(client, "ann")
        created = await client.post(
            "/api/v1/tier/free/rate_limit",
            json={
                "path": "/api/v1/user/me/",
                "limit": 5,
                "period": 3600,
                "algorithm": "fixed_window",
            },
            headers=admin,
        )
        access, _ = await log_in(client, "ann")
        await clear_of_window_edge(3600)
        response = await client.get("/api/v1/user/me/", headers=bearer(access))

    assert created.json()["algorithm"] == "fixed_window"
    assert seconds_off_window_edge(int(response.headers["x-ratelimit-reset"]), 3600) <= 2


async def test_parallel_guesses_cannot_outrun_the_login_count(stack: Stack) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        answers = await asyncio.gather(
            *(
                client.post("/api/v1/login", data={"username": "ann", "password": f"guess{i:04d}"})
                for i in range(30)
            )
        )

    assert sum(a.status_code == 401 for a in answers) == 10
    assert sum(a.status_code == 429 for a in answers) == 20


async def test_answers_of_the_limiter_are_counted_under_their_route(stack: Stack) -> None:
    async with stack.client() as client:
        admin = await _admin(client)
        await _rule(client, admin, "/api/v1/user/me/", 1)
        await sign_up(client, "ann")
        ann, _ = await log_in(client, "ann")
        statuses = [
            (await client.get("/api/v1/user/me/", headers=bearer(ann))).status_code
            for _ in range(2)
        ]
    async with stack.client(stack.gateway_url) as inside:
        metrics = (await inside.get("/metrics")).text

    assert statuses == [200, 429]
    assert 'http_requests_total{method="GET",route="/api/v1/user/me/",status="429"} 1.0' in metrics
