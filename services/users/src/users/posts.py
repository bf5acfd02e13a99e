"""Posts: the users service's post use cases, with ownership decided here, where the data is.

Reads go through the cache; every write bumps the generations of what it changed after its
commit, so the next read anywhere sees it (see cache.py).
"""

from __future__ import annotations

from meshplate_core.transactions import Database
from users.cache import Codec, ReadCache, dataclass_codec, name_generation, post_generation
from users.domain.actors import Actor
from users.domain.pages import PageRequest
from users.domain.posts import NewPost, Post, PostChanges
from users.storage.posts import PostStore
from users.storage.users import UserStore

_POST: Codec[Post] = dataclass_codec(Post)
_PAGE: Codec[tuple[list[Post], int]] = Codec(
    encode=lambda page: {"posts": [_POST.encode(p) for p in page[0]], "total": page[1]},
    decode=lambda data: ([_POST.decode(p) for p in data["posts"]], int(data["total"])),
)


class Posts:
    """Writing, reading and listing posts."""

    def __init__(self, *, database: Database, cache: ReadCache) -> None:
        self._database = database
        self._cache = cache
        self._store = PostStore()
        self._users = UserStore()

    async def create(self, actor: Actor, author_id: int, new: NewPost) -> Post:
        """A new post by `author_id`, written by that author or a superuser."""
        actor.require_owner(author_id)
        async with self._database.transaction() as conn:
            author = await self._users.get_by_id(conn, author_id)
            post = await self._store.create(conn, author_id, new)
        await self._cache.bump(name_generation(author.username))
        return post

    async def get(self, post_id: int, author_username: str) -> Post:
        """A live post of the live user with this username."""

        async def load() -> Post:
            async with self._database.connection() as conn:
                return await self._store.get(conn, post_id, author_username)

        return await self._cache.read(
            f"users:post:{author_username}:{post_id}",
            [name_generation(author_username), post_generation(post_id)],
            load,
            _POST,
        )

    async def page(self, author_username: str, request: PageRequest) -> tuple[list[Post], int]:
        """One page of an author's posts, newest first, and their total."""

        async def load() -> tuple[list[Post], int]:
            async with self._database.connection() as conn:
                return await self._store.page(conn, author_username, request)

        return await self._cache.read(
            f"users:posts:{author_username}:{request.page}:{request.size}",
            [name_generation(author_username)],
            load,
            _PAGE,
        )

    async def change(
        self, actor: Actor, post_id: int, author_username: str, changes: PostChanges
    ) -> Post:
        """Apply `changes`; only the author or a superuser may, whatever the path says."""
        async with self._database.transaction() as conn:
            post = await self._store.get(conn, post_id, author_username)
            actor.require_owner(post.created_by_user_id)
            changed = await self._store.change(conn, post_id, changes)
        await self._cache.bump(name_generation(author_username), post_generation(post_id))
        return changed

    async def delete(self, actor: Actor, post_id: int, author_username: str, *, hard: bool) -> None:
        """Soft-delete (author or superuser) or remove (superuser only) a post."""
        async with self._database.transaction() as conn:
            post = await self._store.get(conn, post_id, author_username)
            if hard:
                actor.require_superuser()
            actor.require_owner(post.created_by_user_id)
            if hard:
                await self._store.hard_delete(conn, post_id)
            else:
                await self._store.soft_delete(conn, post_id)
        await self._cache.bump(name_generation(author_username), post_generation(post_id))
