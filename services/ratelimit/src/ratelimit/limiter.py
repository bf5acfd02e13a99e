"""The limiter: resolves the governing rule from the cached rule book and counts in Redis.

Rules are cached in the process and reloaded when the counting script says their version moved.
Subjects are spread over shards (ratelimit.shards: one on one Redis server), each counted with one
script call per batch, concurrently.
Subjects already over their limit are answered from memory until their retry time, so attack
traffic is never counted; each batch still confirms the rules' version in its one round trip, so
a raised limit frees them at once, on every replica. When Redis cannot be reached the limiter
fails open (admits, logged and counted) or closed (UnavailableError, HTTP 503), as configured;
never a 500.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from meshplate_core.batching import Batcher
from meshplate_core.errors import UnavailableError
from meshplate_core.redis_client import REDIS_FAILURES, RedisClient, get_many
from meshplate_core.transactions import Database
from ratelimit.counters import Count, Counters, StaleRulesError
from ratelimit.domain import (
    DEFAULT_PATH,
    LOGIN_ATTEMPTS_PATH,
    Algorithm,
    Check,
    Decision,
    Limit,
    Rule,
    RuleBook,
    path_key,
)
from ratelimit.shards import Shards
from ratelimit.storage.rules import RuleStore

log = logging.getLogger(__name__)

_LOGIN_ATTEMPTS = path_key(LOGIN_ATTEMPTS_PATH)
# Subjects remembered as over their limit, at most.
_MAX_BLOCKED = 100_000
# Envoy's per-address limit at the edge (see envoy.py).
_EDGE = path_key("/edge")


@dataclass
class LimiterStats:
    """What the limiter did (exported as `ratelimit_decisions_total`, ratelimit.server)."""

    allowed: int = 0
    denied: int = 0
    denied_locally: int = 0
    redis_failures: int = 0


@dataclass
class Limiter:
    """Decides whether a subject may make a request."""

    database: Database
    redis: RedisClient
    default_limit: int
    default_period_s: int
    fail_open: bool
    login_attempt_limit: int = 10
    login_attempt_period_s: int = 900
    edge_limit: int = 600
    edge_period_s: int = 60
    # How long one count in Redis may take before the check is decided without it.
    redis_timeout_s: float = 0.5
    # Under load, one count in Redis per this window at most (meshplate_core.batching).
    batch_linger_s: float = 0.0
    shards: Shards = field(default_factory=lambda: Shards.spread(1))
    stats: LimiterStats = field(default_factory=LimiterStats)
    _books: dict[int, RuleBook] = field(default_factory=dict)
    # The rules version of each shard the rule book is current for (empty: load it).
    _versions: dict[int, str] = field(default_factory=dict)
    _blocked: dict[str, tuple[float, Decision]] = field(default_factory=dict)
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self._counters = Counters(self.redis, timeout_s=self.redis_timeout_s)
        self._batcher: Batcher[Check, Decision] = Batcher(
            self.check_many, linger_s=self.batch_linger_s
        )

    async def close(self) -> None:
        """Close the counters' connection to Redis."""
        await self._counters.close()

    async def reload(self) -> None:
        """Load every rule, and the versions (each shard's) they are current for (read first, so a
        change that lands meanwhile makes the next check reload again rather than be missed)."""
        async with self._reload_lock:
            versions = await get_many(self.redis, self._version_keys())
            async with self.database.connection() as conn:
                rules = await RuleStore().all(conn)
            books: dict[int, list[Rule]] = {}
            for rule in rules:
                books.setdefault(rule.tier_id, []).append(rule)
            self._books = {tier: RuleBook(tier_rules) for tier, tier_rules in books.items()}
            self._versions = {
                shard: version.decode() if isinstance(version, bytes) else (version or "0")
                for shard, version in enumerate(versions)
            }
            self._blocked.clear()

    def _version_keys(self) -> list[str]:
        return [self.shards.version_key(shard) for shard in range(len(self.shards))]

    def resolve(self, tier_id: int | None, path: str) -> Limit:
        """The limit governing `path` for a tier: its rule, else the global default."""
        key = path_key(path)
        if key == _LOGIN_ATTEMPTS:
            return Limit(
                None,
                key,
                self.login_attempt_limit,
                self.login_attempt_period_s,
                Algorithm.SLIDING_WINDOW,
            )
        if key == _EDGE:
            return Limit(None, key, self.edge_limit, self.edge_period_s, Algorithm.SLIDING_WINDOW)
        book = self._books.get(tier_id) if tier_id is not None else None
        rule = book.find(key) if book is not None else None
        if rule is None:
            return Limit(
                None, key, self.default_limit, self.default_period_s, Algorithm.SLIDING_WINDOW
            )
        # A path rule counts every path it covers together; a default counts each path apart.
        scope = key if rule.key == DEFAULT_PATH else f"rule{rule.id}"
        return Limit(rule.id, scope, rule.limit, rule.period_s, rule.algorithm)

    async def check(self, subject: str, tier_id: int | None, path: str, hits: int) -> Decision:
        """Count `hits` requests of `subject` on `path` and decide. Checks made at the same time
        are counted together, in one round trip (see meshplate_core.batching)."""
        return await self._batcher.submit(Check(subject, tier_id, path, hits))

    async def give_back(self, subject: str, tier_id: int | None, path: str, hits: int) -> Decision:
        """Take `hits` counted requests of `subject` on `path` back (at most what is counted):
        the state after it, an admitted one."""
        return await self._batcher.submit(Check(subject, tier_id, path, -hits))

    async def check_many(self, checks: Sequence[Check]) -> list[Decision]:
        """Decide each check, in order, with one Redis round trip per shard for all of them.
        Subjects remembered as over their limit are answered from memory, not counted; the round
        trip still confirms the rules version they were decided under (a raised limit frees them
        at once on every replica), and is all such a batch costs."""
        if len(self.shards) == 1:
            return await self._check_shard(0, checks)
        groups: dict[int, list[int]] = {}
        for index, check in enumerate(checks):
            groups.setdefault(self.shards.of(check.subject), []).append(index)
        answers = await asyncio.gather(
            *(
                self._check_shard(shard, [checks[index] for index in indexes])
                for shard, indexes in groups.items()
            )
        )
        placed = {
            index: decision
            for indexes, shard_decisions in zip(groups.values(), answers, strict=True)
            for index, decision in zip(indexes, shard_decisions, strict=True)
        }
        return [placed[index] for index in range(len(checks))]

    async def _check_shard(self, shard: int, checks: Sequence[Check]) -> list[Decision]:
        failure: BaseException = RedisError("rules kept changing while counting")
        for _attempt in range(3):
            try:
                if not self._versions:
                    await self.reload()
                version = self._versions[shard]
                return await self._decide(checks, shard, version)
            except StaleRulesError:
                # Reload, unless another shard's call has reloaded meanwhile.
                if self._versions.get(shard) == version:
                    self._versions = {}
            except REDIS_FAILURES as exc:  # the rules' versions could not be read
                failure = exc
                break
        return [self._without_redis(self.resolve(c.tier_id, c.path), failure) for c in checks]

    async def _decide(self, checks: Sequence[Check], shard: int, version: str) -> list[Decision]:
        # Raises StaleRulesError when `version` is no longer the shard's rules version.
        decisions: list[Decision | None] = [None] * len(checks)
        counted: list[tuple[int, str, Limit, int]] = []
        now = time.monotonic()
        for index, check in enumerate(checks):
            limit = self.resolve(check.tier_id, check.path)
            counter_key = self.shards.counter_key(shard, check.subject, limit.key)
            blocked = self._blocked.get(counter_key)
            if blocked is not None and check.hits > 0:
                until, decision = blocked
                if now < until:
                    decisions[index] = _later(decision, until - now)
                    continue
                del self._blocked[counter_key]
            counted.append((index, counter_key, limit, check.hits))
        try:
            counts = await self._counters.count(
                [(key, limit, hits) for _index, key, limit, hits in counted],
                version_key=self.shards.version_key(shard),
                rules_version=version,
            )
        except REDIS_FAILURES as exc:
            # Memory's answers stand: they are all this process knows without Redis.
            for index, _key, limit, _hits in counted:
                decisions[index] = self._without_redis(limit, exc)
        else:
            for (index, counter_key, limit, hits), count in zip(counted, counts, strict=True):
                decision = _decision(limit, count)
                decisions[index] = decision
                if hits < 0:
                    # Given back: a subject refused before may be admitted now.
                    self._blocked.pop(counter_key, None)
                elif decision.allowed:
                    self.stats.allowed += 1
                else:
                    self.stats.denied += 1
                    self._remember_blocked(counter_key, decision)
        self.stats.denied_locally += len(checks) - len(counted)
        return [decision for decision in decisions if decision is not None]

    def _remember_blocked(self, counter_key: str, decision: Decision) -> None:
        now = time.monotonic()
        if len(self._blocked) >= _MAX_BLOCKED:
            # Bounded: expired entries go first, and if that is not enough, all of them (they
            # only save Redis work; Redis still decides).
            self._blocked = {k: v for k, v in self._blocked.items() if v[0] > now}
            if len(self._blocked) >= _MAX_BLOCKED:
                self._blocked.clear()
        self._blocked[counter_key] = (now + decision.retry_after_s, decision)

    def _without_redis(self, limit: Limit, exc: BaseException) -> Decision:
        self.stats.redis_failures += 1
        log.warning(
            "rate-limit store unreachable (%s); failing %s",
            exc.__class__.__name__,
            "open" if self.fail_open else "closed",
        )
        if not self.fail_open:
            raise UnavailableError("Rate limiter unavailable")
        return Decision(
            allowed=True, limit=limit.limit, remaining=limit.limit, reset_s=0, retry_after_s=0
        )

    async def rules_changed(self) -> None:
        """Tell every replica (through every shard's version) that the rules changed; reload
        here."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self._version_keys():
                pipe.incr(key)
            await pipe.execute()
        await self.reload()


def _decision(limit: Limit, count: Count) -> Decision:
    return Decision(
        allowed=count.allowed,
        limit=limit.limit,
        remaining=max(0, limit.limit - count.used),
        reset_s=math.ceil(count.reset_ms / 1000),
        retry_after_s=math.ceil(count.retry_after_ms / 1000),
    )


def _later(decision: Decision, remaining_s: float) -> Decision:
    wait = max(1, math.ceil(remaining_s))
    return Decision(
        allowed=False,
        limit=decision.limit,
        remaining=0,
        reset_s=max(wait, decision.reset_s),
        retry_after_s=wait,
    )
