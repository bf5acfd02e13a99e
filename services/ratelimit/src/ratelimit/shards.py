"""Where counters live: shards, each a Redis hash tag with its own copy of the rules version.

One counting script touches one shard's keys (its rules version and its subjects' counters), so on
a Redis Cluster every script runs on one slot. A subject always counts in the same shard. With one
shard (the default, for one Redis server) a batch of checks is one script call; with `n`, a batch
is at most `n` calls, one per shard it touches, and the shards' tags are chosen so their slots
spread evenly over the cluster's 16,384 (each tag in its own `1/n` of the slot range), so masters
holding equal slot ranges (as `redis-cli --cluster create` assigns them) get equal shares.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot


def _tag_in(low: int, high: int, shard: int) -> str:
    """The first tag `rl<shard>.<i>` whose hash slot lies in [low, high)."""
    i = 0
    while not low <= key_slot(f"{{rl{shard}.{i}}}".encode()) < high:
        i += 1
    return f"rl{shard}.{i}"


@dataclass(frozen=True)
class Shards:
    """The shards' hash tags, and the keys under them."""

    tags: tuple[str, ...]

    @classmethod
    def spread(cls, count: int) -> Shards:
        """`count` shards whose tags fall in equal parts of the slot range."""
        if count < 1:
            raise ValueError("at least one shard")
        slots = REDIS_CLUSTER_HASH_SLOTS
        return cls(
            tuple(_tag_in(n * slots // count, (n + 1) * slots // count, n) for n in range(count))
        )

    def __len__(self) -> int:
        return len(self.tags)

    def of(self, subject: str) -> int:
        """The shard that counts `subject`'s requests."""
        return zlib.crc32(subject.encode()) % len(self.tags)

    def version_key(self, shard: int) -> str:
        """The shard's copy of the rules version (bumped on every rule change)."""
        return f"ratelimit:{{{self.tags[shard]}}}:rules:version"

    def counter_key(self, shard: int, subject: str, scope: str) -> str:
        """The counter of `subject` under a limit's scope (a path, or a rule)."""
        return f"ratelimit:{{{self.tags[shard]}}}:{subject}:{scope}"
