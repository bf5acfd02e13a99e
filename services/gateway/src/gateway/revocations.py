"""The gateway's view of revoked tokens, kept current from auth's `auth.revocations` stream.

At start the stream is replayed from its beginning (auth trims it to one access-token lifetime, so
it holds every revocation that can still matter), then followed with blocking reads: a logout on
any gateway is known to every other within milliseconds. Until the first replay is done, or while
the stream cannot be read, `synced` is false and authenticated requests are refused (503): a
gateway that cannot know about revocations does not guess.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from meshplate_core.events import TokensRevoked
from meshplate_core.streams import decode
from meshplate_core.tokens import Claims

log = logging.getLogger(__name__)


class RevocationList:
    """Revoked token ids, login families and per-user cut-offs, each until it no longer matters."""

    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}
        self._families: dict[str, float] = {}
        self._users: dict[int, tuple[float, float]] = {}
        self._last_id = "0-0"
        self._stopping = False
        self.synced = asyncio.Event()

    def stop(self) -> None:
        """Ask `follow` to return after its current read (cancelling it may not be enough: a
        cancellation that lands inside the Redis client's read can be absorbed by it)."""
        self._stopping = True

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
        self._tokens = {k: v for k, v in self._tokens.items() if v > now}
        self._families = {k: v for k, v in self._families.items() if v > now}
        self._users = {k: v for k, v in self._users.items() if v[1] > now}

    async def follow(self, redis: Redis, *, block_ms: int = 1000, retry_s: float = 0.5) -> None:
        """Until `stop`: replay, then follow the stream; on failure, report unsynced and retry."""
        stream = TokensRevoked.STREAM
        last_prune = time.time()
        while not self._stopping:
            try:
                if not self.synced.is_set():
                    entries: Any = await redis.xrange(stream, min=self._next_id())
                    self._apply(entries)
                    self.synced.set()
                    log.info("revocations replayed up to %s", self._last_id)
                reply: Any = await redis.xread({stream: self._last_id}, block=block_ms, count=500)
                for _name, entries in reply or ():
                    self._apply(entries)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.synced.is_set():
                    log.warning(
                        "revocation stream lost (%s); refusing tokens", exc.__class__.__name__
                    )
                self.synced.clear()
                await asyncio.sleep(retry_s)
            if time.time() - last_prune > 60:
                self.prune(time.time())
                last_prune = time.time()

    def _next_id(self) -> str:
        if self._last_id == "0-0":
            return "-"
        return f"({self._last_id}"

    def _apply(self, entries: Any) -> None:
        for entry_id, fields in entries:
            try:
                self.add(decode(TokensRevoked, fields))
            except ValueError:
                log.error("ignoring malformed revocation entry %s", entry_id)
            self._last_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
