"""Decisions through the real gRPC contract, counted in real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import grpc
import pytest
from redis.asyncio import Connection, Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from meshplate.ratelimit.v1 import ratelimit_pb2
from meshplate_core.errors import UnavailableError
from meshplate_core.transactions import Database
from meshplate_testing.proxy import TcpProxy
from meshplate_testing.windows import clear_of_window_edge, seconds_off_window_edge
from ratelimit.limiter import Limiter

if TYPE_CHECKING:
    from meshplate.ratelimit.v1.ratelimit_pb2_grpc import RateLimitServiceAsyncStub

SLIDING = ratelimit_pb2.ALGORITHM_SLIDING_WINDOW
FIXED = ratelimit_pb2.ALGORITHM_FIXED_WINDOW


async def _rule(
    stub: RateLimitServiceAsyncStub,
    path: str,
    limit: int,
    period_s: int = 60,
    *,
    tier_id: int = 1,
    algorithm: ratelimit_pb2.Algorithm.ValueType = SLIDING,
) -> ratelimit_pb2.Rule:
    request = ratelimit_pb2.CreateRuleRequest(
        tier_id=tier_id, path=path, limit=limit, period_s=period_s, algorithm=algorithm
    )
    return (await stub.CreateRule(request)).rule


async def _check(
    stub: RateLimitServiceAsyncStub,
    path: str = "/api/v1/x",
    *,
    subject: str = "user:1",
    tier_id: int | None = 1,
) -> ratelimit_pb2.CheckLimitResponse:
    request = ratelimit_pb2.CheckLimitRequest(subject=subject, path=path, hits=1)
    if tier_id is not None:
        request.tier_id = tier_id
    return await stub.CheckLimit(request)


async def test_200_concurrent_requests_against_50_admit_exactly_50(
    ratelimit: RateLimitServiceAsyncStub,
) -> None:
    await _rule(ratelimit, "/api/v1/x", 50)

    answers = await asyncio.gather(*(_check(ratelimit) for _ in range(200)))

    assert sum(a.allowed for a in answers) == 50
    denied = [a for a in answers if not a.allowed]
    assert all(a.retry_after_s >= 1 and a.remaining == 0 for a in denied)


async def test_two_ratelimit_processes_share_one_budget(
    start_ratelimit: Callable[..., Any],
) -> None:
    first, second = await start_ratelimit(), await start_ratelimit()
    await _rule(first, "/api/v1/x", 30)

    answers = await asyncio.gather(*(_check(s) for s in [first, second] * 40))

    assert sum(a.allowed for a in answers) == 30


async def test_headers_count_down(ratelimit: RateLimitServiceAsyncStub) -> None:
    await _rule(ratelimit, "/api/v1/x", 3, 60)

    answers = [await _check(ratelimit) for _ in range(4)]

    assert [a.remaining for a in answers] == [2, 1, 0, 0]
    assert [a.allowed for a in answers] == [True, True, True, False]
    assert all(a.limit == 3 for a in answers)
    assert 0 < answers[0].reset_s <= 60
    assert 0 < answers[3].retry_after_s <= 60


async def test_sliding_window_allows_no_burst_at_a_window_edge(
    ratelimit: RateLimitServiceAsyncStub,
) -> None:
    await _rule(ratelimit, "/api/v1/x", 5, 6)

    first = [await _check(ratelimit) for _ in range(5)]
    await asyncio.sleep(3)
    edge = [await _check(ratelimit) for _ in range(5)]
    await asyncio.sleep(3.5)
    later = [await _check(ratelimit) for _ in range(5)]

    assert all(a.allowed for a in first)
    assert not any(a.allowed for a in edge)
    assert all(a.allowed for a in later)


async def test_fixed_window_resets_at_the_next_multiple_of_the_period(
    ratelimit: RateLimitServiceAsyncStub,
) -> None:
    await _rule(ratelimit, "/api/v1/x", 2, 3600, algorithm=FIXED)
    await clear_of_window_edge(3600)

    answers = [await _check(ratelimit) for _ in range(3)]

    assert [a.allowed for a in answers] == [True, True, False]
    assert seconds_off_window_edge(answers[0].reset_s, 3600) <= 2
    assert seconds_off_window_edge(answers[2].retry_after_s, 3600) <= 2


async def test_resolution_order_and_the_global_default(
    ratelimit: RateLimitServiceAsyncStub,
) -> None:
    await _rule(ratelimit, "*", 7)
    await _rule(ratelimit, "/api/v1/{username}/posts", 5)
    await _rule(ratelimit, "/api/v1/ann/posts", 3)

    limits = {
        path: (await _check(ratelimit, path, subject=f"user:{path}")).limit
        for path in ("/api/v1/ann/posts", "/api/v1/bob/posts", "/api/v1/users")
    }
    anonymous = await _check(ratelimit, "/api/v1/users", subject="ip:10.0.0.1", tier_id=None)
    other_tier = await _check(ratelimit, "/api/v1/ann/posts", subject="user:9", tier_id=2)

    assert limits == {"/api/v1/ann/posts": 3, "/api/v1/bob/posts": 5, "/api/v1/users": 7}
    assert (anonymous.limit, other_tier.limit) == (10, 10)


async def test_a_template_rule_counts_its_paths_together(
    ratelimit: RateLimitServiceAsyncStub,
) -> None:
    await _rule(ratelimit, "/api/v1/{username}/posts", 2)

    answers = [await _check(ratelimit, f"/api/v1/{name}/posts") for name in ("a", "b", "c")]

    assert [a.allowed for a in answers] == [True, True, False]


async def test_a_rule_change_governs_the_very_next_request_on_every_replica(
    start_ratelimit: Callable[..., Any],
) -> None:
    first, second = await start_ratelimit(), await start_ratelimit()
    rule = await _rule(first, "/api/v1/x", 100)
    assert (await _check(second)).limit == 100

    await first.UpdateRule(ratelimit_pb2.UpdateRuleRequest(tier_id=1, id=rule.id, limit=1))
    after_change = await _check(second)
    await first.DeleteRule(ratelimit_pb2.DeleteRuleRequest(tier_id=1, id=rule.id))
    after_delete = await _check(second, subject="user:2")

    assert (after_change.limit, after_change.allowed) == (1, False)
    assert after_delete.limit == 10


def counting_redis(url: str, calls: list[str]) -> Redis:
    """A Redis client whose connections (the pool's, and any made from its settings) record
    the command each write sends (one write per round trip: the first command of a pipeline)."""

    class CountingConnection(Connection):
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            packed = command if isinstance(command, bytes) else b"".join(command)
            calls.append(packed.split(b"\r\n")[2].decode())
            await super().send_packed_command(command, check_health)

    return Redis.from_url(url, connection_class=CountingConnection)


@pytest.mark.one_redis_server
async def test_the_decision_costs_one_redis_round_trip(
    ratelimit: RateLimitServiceAsyncStub, engine: AsyncEngine, settings: Any
) -> None:
    calls: list[str] = []
    redis = counting_redis(settings.redis_url, calls)
    limiter = Limiter(
        database=Database(engine),
        redis=redis,
        default_limit=10,
        default_period_s=60,
        fail_open=True,
    )
    await limiter.check("user:1", 1, "/api/v1/x", 1)
    calls.clear()

    await limiter.check("user:1", 1, "/api/v1/x", 1)
    await limiter.close()
    await redis.aclose()

    assert calls == ["EVALSHA"]


@pytest.mark.one_redis_server
async def test_checks_made_together_cost_one_redis_round_trip(
    engine: AsyncEngine, settings: Any
) -> None:
    calls: list[str] = []
    redis = counting_redis(settings.redis_url, calls)
    limiter = Limiter(
        database=Database(engine),
        redis=redis,
        default_limit=10,
        default_period_s=60,
        fail_open=True,
    )
    await limiter.check("user:0", 1, "/api/v1/x", 1)
    calls.clear()

    answers = await asyncio.gather(
        *(limiter.check(f"user:{n}", 1, "/api/v1/x", 1) for n in range(1, 51))
    )
    await limiter.close()
    await redis.aclose()

    assert all(a.allowed for a in answers)
    assert calls == ["EVALSHA"]


async def test_a_batch_of_checks_is_decided_in_order_as_one_by_one(
    ratelimit: RateLimitServiceAsyncStub,
) -> None:
    await _rule(ratelimit, "/api/v1/x", 3)
    checks = [
        ratelimit_pb2.CheckLimitRequest(subject=subject, tier_id=1, path="/api/v1/x", hits=1)
        for subject in ["user:1", "user:2", "user:1", "user:1", "user:1", "user:2"]
    ]

    reply = await ratelimit.CheckLimits(ratelimit_pb2.CheckLimitsRequest(checks=checks))

    assert [r.allowed for r in reply.results] == [True, True, True, True, False, True]
    assert [r.remaining for r in reply.results] == [2, 2, 1, 0, 0, 1]


async def test_batches_of_200_against_50_admit_exactly_50(
    ratelimit: RateLimitServiceAsyncStub,
) -> None:
    await _rule(ratelimit, "/api/v1/x", 50)
    check = ratelimit_pb2.CheckLimitRequest(subject="user:1", tier_id=1, path="/api/v1/x", hits=1)
    batch = ratelimit_pb2.CheckLimitsRequest(checks=[check] * 20)

    replies = await asyncio.gather(*(ratelimit.CheckLimits(batch) for _ in range(10)))

    assert sum(r.allowed for reply in replies for r in reply.results) == 50


async def test_a_malformed_check_names_its_place_in_the_batch(
    ratelimit: RateLimitServiceAsyncStub,
) -> None:
    good = ratelimit_pb2.CheckLimitRequest(subject="user:1", path="/api/v1/x", hits=1)
    bad = ratelimit_pb2.CheckLimitRequest(subject="", path="/api/v1/x", hits=1)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ratelimit.CheckLimits(ratelimit_pb2.CheckLimitsRequest(checks=[good, bad]))

    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "check 1" in (err.value.details() or "")


@pytest.mark.one_redis_server
async def test_subjects_over_their_limit_are_not_counted_and_cost_one_round_trip_a_batch(
    engine: AsyncEngine, settings: Any, redis_client: Redis
) -> None:
    calls: list[str] = []
    redis = counting_redis(settings.redis_url, calls)
    limiter = Limiter(
        database=Database(engine), redis=redis, default_limit=2, default_period_s=60, fail_open=True
    )
    for _ in range(3):
        await limiter.check("ip:1.2.3.4", None, "/api/v1/x", 1)
    calls.clear()

    answers = await asyncio.gather(
        *(limiter.check("ip:1.2.3.4", None, "/api/v1/x", 1) for _ in range(100))
    )
    await limiter.close()
    await redis.aclose()

    assert not any(a.allowed for a in answers)
    assert {a.retry_after_s for a in answers} <= set(range(1, 61))
    # One run of the script, which only confirmed the rules' version: nothing was counted.
    assert calls == ["EVALSHA"]
    [counter] = [key async for key in redis_client.scan_iter("ratelimit:{*}:ip:1.2.3.4:*")]
    assert await redis_client.zcard(counter) == 2
    assert limiter.stats.denied_locally == 100


async def test_a_raised_limit_frees_a_subject_held_over_its_old_one_on_every_replica(
    start_ratelimit: Callable[..., Any],
) -> None:
    first, second = await start_ratelimit(), await start_ratelimit()
    rule = await _rule(first, "/api/v1/x", 1)
    assert [(await _check(second)).allowed for _ in range(3)] == [True, False, False]

    await first.UpdateRule(ratelimit_pb2.UpdateRuleRequest(tier_id=1, id=rule.id, limit=100))
    after_raise = await _check(second)

    assert (after_raise.allowed, after_raise.limit, after_raise.remaining) == (True, 100, 98)


async def test_every_counter_has_a_ttl(
    ratelimit: RateLimitServiceAsyncStub, redis_client: Redis
) -> None:
    await _rule(ratelimit, "/api/v1/fixed", 5, 60, algorithm=FIXED)
    await _check(ratelimit, "/api/v1/fixed")
    await _check(ratelimit, "/api/v1/sliding")

    keys = [k async for k in redis_client.scan_iter("ratelimit:{*") if b"rules" not in k]

    ttls = [await redis_client.pttl(k) for k in keys]

    assert len(keys) == 2
    assert all(0 < ttl <= 3_600_000 for ttl in ttls)


@pytest.mark.parametrize(("fail_open", "expected"), [(True, "allowed"), (False, "unavailable")])
async def test_redis_unreachable_fails_open_or_closed(
    start_ratelimit: Callable[..., Any], fail_open: bool, expected: str
) -> None:
    stub = await start_ratelimit(redis_url="redis://127.0.0.1:1/0", fail_open=fail_open)

    try:
        answer = await _check(stub)
        outcome = "allowed" if answer.allowed else "denied"
    except grpc.aio.AioRpcError as err:
        outcome = err.code().name.lower()

    assert outcome == expected


@pytest.mark.one_redis_server
@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_redis_answering_too_late_is_decided_without_then_used_again(
    engine: AsyncEngine, settings: Any, fail_open: bool
) -> None:
    url = urlsplit(settings.redis_url)
    async with TcpProxy(url.hostname or "127.0.0.1", url.port or 6379) as proxy:
        redis = Redis.from_url(url._replace(netloc=f"127.0.0.1:{proxy.port}").geturl())
        limiter = Limiter(
            database=Database(engine),
            redis=redis,
            default_limit=10,
            default_period_s=60,
            fail_open=fail_open,
            redis_timeout_s=0.2,
        )
        try:
            first = await limiter.check("user:1", 1, "/api/v1/x", 1)
            proxy.delay_s = 1.0
            try:
                answer = await limiter.check("user:1", 1, "/api/v1/x", 1)
                late = "allowed" if answer.allowed else ""
            except UnavailableError:
                late = "unavailable"
            proxy.delay_s = 0
            again = await limiter.check("user:1", 1, "/api/v1/x", 1)
        finally:
            await limiter.close()
            await redis.aclose()

    assert late == ("allowed" if fail_open else "unavailable")
    assert limiter.stats.redis_failures == 1
    # Counted again, on a new connection: the late call's hit may or may not have landed.
    assert first.remaining == 9
    assert again.allowed
    assert again.remaining in (7, 8)


async def test_a_redis_that_lost_the_script_is_given_it_again(
    engine: AsyncEngine, settings: Any, redis_client: Redis
) -> None:
    limiter = Limiter(
        database=Database(engine),
        redis=redis_client,
        default_limit=10,
        default_period_s=60,
        fail_open=False,
    )
    try:
        await limiter.check("user:1", 1, "/api/v1/x", 1)
        await redis_client.script_flush()
        answer = await limiter.check("user:1", 1, "/api/v1/x", 1)
        after = await limiter.check("user:1", 1, "/api/v1/x", 1)
    finally:
        await limiter.close()

    assert (answer.remaining, after.remaining) == (8, 7)
    assert limiter.stats.redis_failures == 0


@pytest.mark.parametrize(
    ("path", "limit", "period_s", "field"),
    [("/api/v1/x y", 1, 1, "path"), ("/api/v1/x", 0, 1, "limit"), ("/api/v1/x", 1, 0, "period")],
)
async def test_bad_rules_name_the_field(
    ratelimit: RateLimitServiceAsyncStub, path: str, limit: int, period_s: int, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _rule(ratelimit, path, limit, period_s)

    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert ("field", field) in tuple(err.value.trailing_metadata() or ())


async def test_one_rule_per_tier_and_path_and_per_name(
    ratelimit: RateLimitServiceAsyncStub,
) -> None:
    await _rule(ratelimit, "/api/v1/x", 1)

    with pytest.raises(grpc.aio.AioRpcError) as same_path:
        await _rule(ratelimit, "api_v1_x", 2)
    other_tier = await _rule(ratelimit, "/api/v1/x", 2, tier_id=2)

    assert same_path.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert other_tier.path == "/api/v1/x"


async def test_rules_are_listed_read_and_missing_ones_are_not_found(
    ratelimit: RateLimitServiceAsyncStub,
) -> None:
    created = [await _rule(ratelimit, f"/api/v1/p{i}", i + 1) for i in range(3)]

    page = await ratelimit.ListRules(
        ratelimit_pb2.ListRulesRequest(tier_id=1, page=1, items_per_page=2)
    )
    one = await ratelimit.GetRule(ratelimit_pb2.GetRuleRequest(tier_id=1, id=created[0].id))
    with pytest.raises(grpc.aio.AioRpcError) as other_tier:
        await ratelimit.GetRule(ratelimit_pb2.GetRuleRequest(tier_id=2, id=created[0].id))

    assert ([r.id for r in page.rules], page.total_count) == ([c.id for c in created[:2]], 3)
    assert one.rule == created[0]
    assert other_tier.value.code() is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("algorithm", [SLIDING, FIXED], ids=["sliding", "fixed"])
async def test_returned_hits_free_their_place_and_never_more_than_was_counted(
    ratelimit: RateLimitServiceAsyncStub, algorithm: ratelimit_pb2.Algorithm.ValueType
) -> None:
    await _rule(ratelimit, "/api/v1/x", 3, algorithm=algorithm)

    async def give_back(hits: int) -> int:
        request = ratelimit_pb2.ReturnHitsRequest(
            subject="user:1", tier_id=1, path="/api/v1/x", hits=hits
        )
        return (await ratelimit.ReturnHits(request)).remaining

    await clear_of_window_edge(60)
    admitted = [(await _check(ratelimit)).allowed for _ in range(4)]
    after_one = await give_back(1)
    again = [(await _check(ratelimit)).allowed for _ in range(2)]
    after_all = await give_back(10)
    fresh = [(await _check(ratelimit)).allowed for _ in range(4)]

    assert admitted == [True, True, True, False]
    # A subject the service remembered as over its limit is admitted once a hit is back.
    assert (after_one, again) == (1, [True, False])
    assert (after_all, fresh) == (3, [True, True, True, False])


async def test_returning_nothing_or_no_subject_is_an_argument_error(
    ratelimit: RateLimitServiceAsyncStub,
) -> None:
    for request in (
        ratelimit_pb2.ReturnHitsRequest(subject="user:1", path="/api/v1/x", hits=0),
        ratelimit_pb2.ReturnHitsRequest(path="/api/v1/x", hits=1),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ratelimit.ReturnHits(request)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
