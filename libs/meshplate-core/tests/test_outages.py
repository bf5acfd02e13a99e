"""What counts as a dependency out, read from an exception's chain."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError

from meshplate_core.outages import is_outage


class PostgresError(Exception):
    """What asyncpg raises: an error with its SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _caused_by(cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise RuntimeError("while serving") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    "cause",
    [
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        RedisConnectionError("gone"),
        RedisTimeoutError("late"),
        PostgresError("57P01"),  # terminating connection due to administrator command
        PostgresError("57P03"),  # the database system is starting up
        PostgresError("08006"),  # connection failure
        DBAPIError("SELECT 1", None, Exception("closed"), connection_invalidated=True),
    ],
)
def test_a_dependency_out_anywhere_in_the_chain_is_an_outage(cause: BaseException) -> None:
    assert is_outage(cause)
    assert is_outage(_caused_by(cause))


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        KeyError("a bug"),
        PostgresError("23505"),  # unique violation: the data's rule, not an outage
        ResponseError("WRONGTYPE"),
        DBAPIError("SELECT 1", None, Exception("syntax"), connection_invalidated=False),
    ],
)
def test_bugs_and_rules_of_the_data_are_not(error: BaseException) -> None:
    assert not is_outage(error)
    assert not is_outage(_caused_by(error))


def test_a_chain_that_loops_ends() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__context__, second.__context__ = second, first

    assert not is_outage(first)
