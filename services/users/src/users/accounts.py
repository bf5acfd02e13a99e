"""Accounts: the users service's use cases, each one transaction with the events it announces.

It knows transactions, hashing and events, and nothing of gRPC or SQL: storage runs the
statements, the outbox delivers the events after the commit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from meshplate_core.errors import InvalidArgumentError
from meshplate_core.events import UserDeleted, UserRegistered, UserRightsChanged, UserTierChanged
from meshplate_core.outbox import Outbox
from meshplate_core.transactions import Connection, Database
from users.cache import Codec, ReadCache, dataclass_codec, id_generation, name_generation
from users.domain.actors import Actor, NotAllowedError, OwnRightsError
from users.domain.pages import PageRequest
from users.domain.tiers import Tier
from users.domain.users import (
    InvalidCredentialsError,
    Registration,
    User,
    UserChanges,
    UserSearch,
    normalize_email,
)
from users.passwords import PasswordHasher
from users.storage.tiers import TierStore
from users.storage.users import UserStore

_PUBLIC_USER: Codec[User] = dataclass_codec(User)


class Accounts:
    """Sign-up, credentials, profile changes, deletion and tiers of users."""

    def __init__(
        self,
        *,
        database: Database,
        outbox: Outbox,
        hasher: PasswordHasher,
        default_tier_name: str,
        cache: ReadCache,
    ) -> None:
        self._database = database
        self._outbox = outbox
        self._cache = cache
        self._hasher = hasher
        self._default_tier_name = default_tier_name
        self.users = UserStore()
        self.tiers = TierStore()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """One transaction; the outbox relay is woken once it has committed."""
        async with self._database.transaction() as conn:
            yield conn
        self._outbox.notify()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Connection]:
        """A connection for reads."""
        # Reads need no BEGIN and ROLLBACK around them: under READ COMMITTED each statement
        # sees its own snapshot either way.
        async with self._database.autocommit() as conn:
            yield conn

    async def register(
        self,
        registration: Registration,
        *,
        is_superuser: bool = False,
        time_left_s: float | None = None,
    ) -> User:
        """Create a user on the default tier and announce it (`time_left_s`: the caller's
        remaining deadline, which bounds the wait for hashing)."""
        hashed = await self._hasher.hash(registration.password, time_left_s=time_left_s)
        async with self.transaction() as conn:
            user = await self.users.create(
                conn,
                registration,
                hashed_password=hashed,
                tier_name=self._default_tier_name,
                is_superuser=is_superuser,
            )
            await self._outbox.add(
                conn,
                UserRegistered(
                    user_id=user.id, username=user.username, name=user.name, email=user.email
                ),
            )
        return user

    async def ensure_admin(self, registration: Registration) -> User | None:
        """Create the first superuser unless a user with that username exists (idempotent);
        the new user when one was created."""
        async with self.reading() as conn:
            if await self.users.exists(conn, registration.username):
                return None
        return await self.register(registration, is_superuser=True)

    async def check_credentials(
        self, username_or_email: str, password: str, *, time_left_s: float | None = None
    ) -> User:
        """The live user these credentials belong to; the same work whether or not it exists.
        A hash with outdated parameters is replaced by a current one."""
        # Under a flood, refused before it costs a query.
        self._hasher.check_room(time_left_s)
        key = username_or_email.strip()
        if "@" in key:
            try:
                key = normalize_email(key)
            except InvalidArgumentError:
                key = ""
        async with self.reading() as conn:
            user = await self.users.find_for_login(conn, key) if key else None
        if user is None:
            await self._hasher.waste(password, time_left_s=time_left_s)
            raise InvalidCredentialsError()
        ok, new_hash = await self._hasher.verify(
            password, user.hashed_password, time_left_s=time_left_s
        )
        if not ok:
            raise InvalidCredentialsError()
        if new_hash is not None:
            async with self.transaction() as conn:
                await self.users.set_password_hash(conn, user.id, new_hash)
        return user

    async def change(self, actor: Actor, user_id: int, changes: UserChanges) -> User:
        """Apply a validated profile update (the user's own, or anyone's for a superuser)."""
        actor.require_owner(user_id)
        async with self.transaction() as conn:
            before = await self.users.get_by_id(conn, user_id)
            user = await self.users.change(conn, user_id, changes)
        await self._cache.bump(
            name_generation(before.username), name_generation(user.username), id_generation(user_id)
        )
        return user

    async def delete(self, actor: Actor, user_id: int, *, hard: bool) -> None:
        """Soft-delete a user (oneself, or anyone for a superuser), or remove them and their data
        (a superuser only); announce it either way."""
        if hard:
            actor.require_superuser()
        actor.require_owner(user_id)
        async with self.transaction() as conn:
            user = await self.users.get_by_id(conn, user_id, include_deleted=hard)
            if hard:
                await self.users.hard_delete(conn, user_id)
            else:
                await self.users.soft_delete(conn, user_id)
            await self._outbox.add(conn, UserDeleted(user_id=user_id, hard=hard))
        await self._cache.bump(name_generation(user.username), id_generation(user_id))

    async def set_tier(self, actor: Actor, user_id: int, tier_id: int) -> User:
        """Move a user to an existing tier (a superuser only) and announce it."""
        actor.require_superuser()
        async with self.transaction() as conn:
            await self.tiers.get_by_id(conn, tier_id)
            user = await self.users.set_tier(conn, user_id, tier_id)
            await self._outbox.add(conn, UserTierChanged(user_id=user_id, tier_id=tier_id))
        await self._cache.bump(name_generation(user.username), id_generation(user_id))
        return user

    async def page_of_users(
        self, request: PageRequest, search: UserSearch, actor: Actor | None = None
    ) -> tuple[list[User], int]:
        """One page of the users a search matches and their total; soft-deleted users only for
        a superuser."""
        if search.deleted and (actor is None or not actor.is_superuser):
            raise NotAllowedError()
        async with self.reading() as conn:
            return await self.users.page(conn, request, search)

    async def restore(self, actor: Actor, user_id: int) -> User:
        """Make a soft-deleted user live again (a superuser only)."""
        actor.require_superuser()
        async with self.transaction() as conn:
            user = await self.users.restore(conn, user_id)
        await self._cache.bump(name_generation(user.username), id_generation(user_id))
        return user

    async def set_superuser(self, actor: Actor, user_id: int, flag: bool) -> User:
        """Grant or take away superuser rights (a superuser only, never their own) and announce
        it: the user's tokens, which carry the old rights, are revoked by auth."""
        actor.require_superuser()
        if actor.user_id == user_id:
            raise OwnRightsError()
        async with self.transaction() as conn:
            user, changed = await self.users.set_superuser(conn, user_id, flag)
            if changed:
                await self._outbox.add(conn, UserRightsChanged(user_id=user_id, is_superuser=flag))
        await self._cache.bump(name_generation(user.username), id_generation(user_id))
        return user

    async def user(
        self,
        *,
        user_id: int | None = None,
        username: str | None = None,
        include_deleted: bool = False,
    ) -> User:
        """A live (or, when asked, soft-deleted) user by id or username; live users come from
        the cache."""
        if username is not None and not include_deleted:
            return await self._cache.read(
                f"users:user:{username}",
                [name_generation(username)],
                lambda: self._load_public(username=username),
                _PUBLIC_USER,
            )
        if user_id is not None and not include_deleted:
            return await self._cache.read(
                f"users:user-id:{user_id}",
                [id_generation(user_id)],
                lambda: self._load_public(user_id=user_id),
                _PUBLIC_USER,
            )
        async with self.reading() as conn:
            if user_id is not None:
                return await self.users.get_by_id(conn, user_id, include_deleted=include_deleted)
            assert username is not None
            return await self.users.get_by_username(conn, username, include_deleted=include_deleted)

    async def _load_public(self, *, username: str | None = None, user_id: int = 0) -> User:
        async with self.reading() as conn:
            if username is not None:
                user = await self.users.get_by_username(conn, username)
            else:
                user = await self.users.get_by_id(conn, user_id)
        # Password hashes never go to the cache.
        return dataclasses.replace(user, hashed_password="")

    async def tier(self, *, tier_id: int | None = None, name: str | None = None) -> Tier:
        """A tier by id or name."""
        async with self.reading() as conn:
            if tier_id is not None:
                return await self.tiers.get_by_id(conn, tier_id)
            assert name is not None
            return await self.tiers.get_by_name(conn, name)

    async def create_tier(self, actor: Actor, name: str) -> Tier:
        """A new tier with a free name (a superuser only)."""
        actor.require_superuser()
        async with self.transaction() as conn:
            return await self.tiers.create(conn, name)

    async def page_of_tiers(self, request: PageRequest) -> tuple[list[Tier], int]:
        """One page of tiers and their total."""
        async with self.reading() as conn:
            return await self.tiers.page(conn, request)

    async def rename_tier(self, actor: Actor, tier_id: int, name: str) -> Tier:
        """Give a tier another free name (a superuser only)."""
        actor.require_superuser()
        async with self.transaction() as conn:
            return await self.tiers.rename(conn, tier_id, name)

    async def delete_tier(self, actor: Actor, tier_id: int) -> None:
        """Remove a tier that no user is on (a superuser only)."""
        actor.require_superuser()
        async with self.transaction() as conn:
            await self.tiers.delete(conn, tier_id)
