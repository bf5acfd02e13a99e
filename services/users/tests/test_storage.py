from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from meshplate_core.database import migrate, open_engine
from users.domain.pages import PageRequest
from users.domain.tiers import TierInUseError, TierNameTakenError
from users.domain.users import EmailTakenError, UserChanges, UsernameTakenError, UserNotFoundError
from users.server import MIGRATIONS
from users.storage.posts import listing_statement
from users.storage.tiers import TierStore
from users.storage.users import UserStore

from .factories import make_registration

users, tiers = UserStore(), TierStore()


async def _create(engine: AsyncEngine, **overrides: str) -> object:
    async with engine.begin() as conn:
        return await users.create(
            conn, make_registration(**overrides), hashed_password="h", tier_name="free"
        )


async def test_created_user_is_found_by_username_and_id(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        created = await users.create(
            conn, make_registration(), hashed_password="h", tier_name="free"
        )

        assert await users.get_by_username(conn, created.username) == created
        assert await users.get_by_id(conn, created.id) == created


async def test_new_user_gets_the_default_tier_or_none(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        free = await tiers.ensure(conn, "free")
        on_free = await users.create(
            conn, make_registration(), hashed_password="h", tier_name="free"
        )
        on_none = await users.create(
            conn, make_registration(), hashed_password="h", tier_name="gold"
        )

    assert (on_free.tier_id, on_none.tier_id) == (free.id, None)


@pytest.mark.parametrize(
    ("field", "error"), [("username", UsernameTakenError), ("email", EmailTakenError)]
)
async def test_duplicates_are_taken(
    engine: AsyncEngine, field: str, error: type[Exception]
) -> None:
    await _create(engine, **{field: "ann@x.io" if field == "email" else "ann"})

    with pytest.raises(error):
        await _create(engine, **{field: "ann@x.io" if field == "email" else "ann"})


async def test_concurrent_duplicates_give_one_user(engine: AsyncEngine) -> None:
    results = await asyncio.gather(
        *(_create(engine, email="same@x.io") for _ in range(8)), return_exceptions=True
    )

    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, EmailTakenError) for r in results if isinstance(r, BaseException))


async def test_changes_apply_and_keep_uniqueness(engine: AsyncEngine) -> None:
    await _create(engine, username="bob")
    async with engine.begin() as conn:
        ann = await users.create(
            conn, make_registration(username="ann"), hashed_password="h", tier_name="free"
        )
        changed = await users.change(conn, ann.id, UserChanges(name="Ann B", username="annb"))
        with pytest.raises(UsernameTakenError):
            await users.change(conn, ann.id, UserChanges(username="bob"))

    assert (changed.name, changed.username) == ("Ann B", "annb")
    assert changed.updated_at is not None


async def test_soft_deleted_user_is_missing_but_keeps_its_name_taken(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        ann = await users.create(
            conn, make_registration(username="ann"), hashed_password="h", tier_name="free"
        )
        await users.soft_delete(conn, ann.id)
        with pytest.raises(UserNotFoundError):
            await users.get_by_id(conn, ann.id)
        with pytest.raises(UserNotFoundError):
            await users.soft_delete(conn, ann.id)
        assert await users.exists(conn, "ann")

    with pytest.raises(UsernameTakenError):
        await _create(engine, username="ann")


async def test_hard_delete_removes_the_row(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        ann = await users.create(
            conn, make_registration(username="ann"), hashed_password="h", tier_name="free"
        )
        await users.hard_delete(conn, ann.id)
        assert not await users.exists(conn, "ann")
        with pytest.raises(UserNotFoundError):
            await users.hard_delete(conn, ann.id)


async def test_page_counts_only_live_users_in_id_order(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        _, before = await users.page(conn, PageRequest(page=1, size=1))  # the first admin
        made = [
            await users.create(conn, make_registration(), hashed_password="h", tier_name="free")
            for _ in range(5)
        ]
        await users.soft_delete(conn, made[0].id)
        everyone, total = await users.page(conn, PageRequest(page=1, size=100))
        second, _ = await users.page(conn, PageRequest(page=2, size=2))

    ids = [u.id for u in everyone]
    assert total == before + 4 == len(ids)
    assert made[0].id not in ids
    assert {u.id for u in made[1:]} <= set(ids)
    assert ids == sorted(ids)
    assert [u.id for u in second] == ids[2:4]


async def test_tier_in_use_cannot_be_deleted(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        gold = await tiers.create(conn, "gold")
        ann = await users.create(conn, make_registration(), hashed_password="h", tier_name="gold")
        with pytest.raises(TierInUseError):
            await tiers.delete(conn, gold.id)
        await users.hard_delete(conn, ann.id)
        await tiers.delete(conn, gold.id)


async def test_tier_names_are_unique(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await tiers.create(conn, "gold")
        silver = await tiers.create(conn, "silver")
        with pytest.raises(TierNameTakenError):
            await tiers.create(conn, "gold")
        with pytest.raises(TierNameTakenError):
            await tiers.rename(conn, silver.id, "gold")


async def test_ensuring_a_tier_concurrently_gives_one_tier(engine: AsyncEngine) -> None:
    async def ensure() -> int:
        async with engine.begin() as conn:
            return (await tiers.ensure(conn, "pro")).id

    ids = await asyncio.gather(*(ensure() for _ in range(5)))

    assert len(set(ids)) == 1


async def test_concurrent_migrations_take_turns(make_database: Callable[[str], str]) -> None:
    url = await asyncio.to_thread(make_database, "users_migrations")
    engines = [open_engine(url, pool_size=1, application_name="t") for _ in range(3)]
    try:
        await asyncio.gather(*(migrate(e, MIGRATIONS) for e in engines))
        created = await _create(engines[0])
    finally:
        for e in engines:
            await e.dispose()

    assert getattr(created, "id") == 1  # noqa: B009


async def test_the_same_store_works_on_sqlite(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/users.db", pool_size=1, application_name="t")
    try:
        await migrate(engine, MIGRATIONS)
        async with engine.begin() as conn:
            await tiers.ensure(conn, "free")
        created = await _create(engine, username="ann")
        with pytest.raises(UsernameTakenError):
            await _create(engine, username="ann")
        async with engine.connect() as conn:
            found = await users.get_by_username(conn, "ann")
    finally:
        await engine.dispose()

    assert found == created
    assert found.created_at.tzinfo is not None


async def test_the_listing_query_is_served_by_its_index(engine: AsyncEngine) -> None:
    statement = listing_statement("ann", PageRequest(page=1, size=10))
    compiled = statement.compile(engine.sync_engine, compile_kwargs={"literal_binds": True})
    async with engine.connect() as conn:
        await conn.execute(text("SET enable_seqscan = off"))
        plan = (await conn.execute(text(f"EXPLAIN {compiled}"))).scalars().all()

    assert any("ix_post_author_newest" in line for line in plan)
