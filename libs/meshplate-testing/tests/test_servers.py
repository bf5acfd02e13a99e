"""The fallbacks of the test setup, exercised even where local servers are running."""

from __future__ import annotations

from meshplate_testing.servers import (
    postgres_answers,
    redis_answers,
    throwaway_postgres,
    throwaway_redis,
)


def test_throwaway_postgres_answers_and_is_gone_after() -> None:
    with throwaway_postgres() as dsn:
        up = postgres_answers(dsn)

    assert up
    assert not postgres_answers(dsn)


def test_throwaway_redis_answers_and_is_gone_after() -> None:
    with throwaway_redis() as url:
        up = redis_answers(url)

    assert up
    assert not redis_answers(url)
