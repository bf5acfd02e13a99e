"""Which unexpected exceptions mean a dependency is out (unreachable, restarting, too slow)
rather than a bug: they are answered UNAVAILABLE (HTTP 503, worth a retry), not INTERNAL (500).

Read from the exception's chain, so a database driver's error wrapped by SQLAlchemy counts too:
an OS-level connection failure or timeout; SQLAlchemy's mark of a connection it found dead;
PostgreSQL's SQLSTATE classes 08 (connection exception) and 57 (operator intervention: shutting
down, starting up, terminated by the administrator); Redis's connection and timeout errors, and a
Redis Cluster client's own failures (no node reachable, a slot served by none).
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

# PostgreSQL SQLSTATE classes that mean "the server is not there for you now".
_POSTGRES_OUTAGE_CLASSES = ("08", "57")


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says a dependency could not be reached or answered."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current,
            OSError
            | TimeoutError
            | RedisConnectionError
            | RedisTimeoutError
            | RedisClusterException,
        ):
            return True
        if getattr(current, "connection_invalidated", False):
            return True
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(state, str) and state[:2] in _POSTGRES_OUTAGE_CLASSES:
            return True
        current = current.__cause__ or current.__context__
    return False
