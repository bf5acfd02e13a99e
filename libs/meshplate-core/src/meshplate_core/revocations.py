"""A process's view of revoked tokens, kept current from auth's `auth.revocations` stream (the
gateways follow it, and the users service, for the tokens forwarded to it).

At start the stream is replayed from its beginning (auth trims it to one access-token lifetime, so
it holds every revocation that can still matter), then followed with blocking reads: a logout on
any gateway is known to every follower within milliseconds. Until the first replay is done, or
while the stream cannot be read, `synced` is false and tokens are refused as unverifiable (503 at
the gateway, UNAVAILABLE at a service): a process that cannot know about revocations does not
guess.
"""

from __future__ import annotations

import asyncio
import time

from meshplate_core.events import TokensRevoked
from meshplate_core.following import Follower
from meshplate_core.redis_client import RedisClient
from meshplate_core.tokens import Claims

_PRUNE_EVERY_S = 60.0


class RevocationList:
    """Revoked token ids, login families and per-user cut-offs, each until it no longer matters."""

    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}
        self._families: dict[str, float] = {}
        self._users: dict[int, tuple[float, float]] = {}
        self._pruned_at = time.monotonic()
        self._follower: Follower | None = None
        self.synced = asyncio.Event()

    def add(self, event: TokensRevoked) -> None:
        """Record one revocation."""
        until = event.expires_at.timestamp()
        if event.token_id is not None:
            self._tokens[event.token_id] = until
        if event.family_id is not None:
            self._families[event.family_id] = until
        if event.issued_before is not None:
            before = event.issued_before.timestamp()
            known = self._users.get(event.user_id)
            if known is None or known[0] < before:
                self._users[event.user_id] = (before, until)
        if time.monotonic() - self._pruned_at > _PRUNE_EVERY_S:
            self.prune(time.time())

    def is_revoked(self, claims: Claims) -> bool:
        """Whether a verified token was revoked."""
        if claims.token_id in self._tokens:
            return True
        if claims.family_id is not None and claims.family_id in self._families:
            return True
        cutoff = self._users.get(claims.user_id)
        return cutoff is not None and claims.issued_at < cutoff[0]

    def prune(self, now: float) -> None:
        """Forget what only names tokens that have expired."""
        self._pruned_at = time.monotonic()
        self._tokens = {k: v for k, v in self._tokens.items() if v > now}
        self._families = {k: v for k, v in self._families.items() if v > now}
        self._users = {k: v for k, v in self._users.items() if v[1] > now}

    async def follow(self, redis: RedisClient) -> None:
        """Replay, then follow the stream, until `stop`."""
        self._follower = Follower(TokensRevoked, self.add, synced=self.synced)
        await self._follower.follow(redis)

    def stop(self) -> None:
        """Stop following after the current read."""
        if self._follower is not None:
            self._follower.stop()
