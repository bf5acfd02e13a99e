"""`make bench`: a page of posts read from the users service's Redis cache against the same page
read after a write to its author's posts (a miss: the database, then the cache filled), both
through the gateway over gRPC, measured in the same run.

Not part of `make test` (pytest collects `test_*.py`; `make bench` names this file). The stack is
the end-to-end tests' one: every service in this process, on real PostgreSQL and Redis; the
gateway is reached directly. The target: a hit costs at most 0.8 of a miss.
"""

from __future__ import annotations

from .conftest import Stack
from .identity import bearer, log_in, sign_up
from .measure import line, p50, p95, report, timed

ROUNDS = 100
PAGE = "/api/v1/ann/posts?page=1&items_per_page=10"
TARGET_RATIO = 0.8


async def test_a_cached_page_of_posts_costs_less_than_a_miss(stack: Stack) -> None:
    async with stack.client(stack.gateway_url) as client:
        await sign_up(client, "ann")
        access, _ = await log_in(client, "ann")
        ids = []
        for n in range(10):
            created = await client.post(
                "/api/v1/ann/post",
                json={"title": f"post {n}", "text": "lorem ipsum " * 40},
                headers=bearer(access),
            )
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        misses: list[float] = []
        hits: list[float] = []
        for n in range(ROUNDS):
            edited = await client.patch(
                f"/api/v1/ann/post/{ids[n % len(ids)]}",
                json={"title": f"edit {n}"},
                headers=bearer(access),
            )
            assert edited.status_code == 200, edited.text
            for samples in (misses, hits):
                response, elapsed = await timed(client.get(PAGE))
                assert response.status_code == 200
                samples.append(elapsed)

    miss = p50(misses)
    report(
        f"page of 10 posts, anonymous GET through the gateway; {ROUNDS} rounds",
        line("baseline: after a write p50", miss),
        line("cached p50", p50(hits), miss),
        line("after a write p95", p95(misses), miss),
        line("cached p95", p95(hits), miss),
    )
    assert p50(hits) <= TARGET_RATIO * miss
