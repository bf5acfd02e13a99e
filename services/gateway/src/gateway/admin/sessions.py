"""Admin sessions, kept in Redis and referenced by a cookie.

A session holds the superuser's id and the access and refresh tokens of its sign-in (so every
action is made with that user's identity, as through the REST API). The cookie holds a random id
and a random key: the Redis key is the id's hash (`admin:session:<sha256>`) and the tokens are
stored encrypted with the key (Fernet), so neither Redis, nor a backup of it, nor a log line holds
anything a caller could use. A session ends after `idle_s` without a request (each request renews
it, but not the dashboard's own refreshes), `max_s` after it began whatever happens, at sign-out,
or when its user stops being a superuser. One key per session: it lives on a Redis Cluster as on
one server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken

from meshplate_core.redis_client import RedisClient
from meshplate_core.streams import as_text

_PREFIX = "admin:session:"


@dataclass(frozen=True)
class Session:
    """One signed-in superuser; `cookie` is what the browser holds (id and key)."""

    cookie: str
    user_id: int
    access: str
    refresh: str
    began: float


def _new_cookie() -> str:
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return f"{secrets.token_urlsafe(24)}.{key}"


def _parts(cookie: str) -> tuple[str, Fernet] | None:
    """The session id and the cipher of a cookie, or None for a malformed one."""
    session_id, _, key = cookie.partition(".")
    if not session_id or len(key) != 43:
        return None
    try:
        return session_id, Fernet(key + "=")
    except ValueError:
        return None


def redis_key(cookie: str) -> str:
    """The Redis key of the session a cookie names."""
    return _PREFIX + hashlib.sha256(cookie.partition(".")[0].encode()).hexdigest()


class Sessions:
    """Opens, finds (renewing) and ends sessions."""

    def __init__(self, redis: RedisClient, *, idle_s: int, max_s: int) -> None:
        self._redis = redis
        self._idle_s = idle_s
        self._max_s = max_s

    async def open(self, user_id: int, access: str, refresh: str) -> Session:
        """A new session under a new id (never one the browser had: no fixation)."""
        session = Session(_new_cookie(), user_id, access, refresh, time.time())
        await self._store(session)
        return session

    async def find(self, cookie: str, *, renew: bool = True) -> Session | None:
        """The session, renewed for another `idle_s` unless `renew` is false; None once it ended,
        went idle or outlived `max_s`, or for a cookie that does not open it."""
        if (parts := _parts(cookie)) is None:
            return None
        _session_id, cipher = parts
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(redis_key(cookie))
            if renew:
                pipe.expire(redis_key(cookie), self._idle_s, xx=True)
            fields, *_renewed = await pipe.execute()
        values: dict[str, str] = {as_text(k): as_text(v) for k, v in fields.items()}
        if not values:
            return None
        began = float(values["began"])
        if time.time() - began > self._max_s:
            await self.end(cookie)
            return None
        try:
            tokens = json.loads(cipher.decrypt(values["tokens"].encode()))
        except InvalidToken:
            return None
        return Session(cookie, int(values["user_id"]), tokens["access"], tokens["refresh"], began)

    async def renew_tokens(self, session: Session, access: str, refresh: str) -> Session | None:
        """The session with the tokens of a refresh; None if it ended meanwhile (a sign-out, a
        demotion), which a refresh must not bring back."""
        renewed = Session(session.cookie, session.user_id, access, refresh, session.began)
        if not await self._redis.exists(redis_key(session.cookie)):
            return None
        await self._store(renewed)
        return renewed

    async def end(self, cookie: str) -> None:
        """End the session at once."""
        await self._redis.delete(redis_key(cookie))

    async def _store(self, session: Session) -> None:
        parts = _parts(session.cookie)
        assert parts is not None  # made by _new_cookie
        _session_id, cipher = parts
        tokens = json.dumps({"access": session.access, "refresh": session.refresh})
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(
                redis_key(session.cookie),
                mapping={
                    "user_id": session.user_id,
                    "began": session.began,
                    "tokens": cipher.encrypt(tokens.encode()).decode(),
                },
            )
            pipe.expire(redis_key(session.cookie), self._idle_s)
            await pipe.execute()
