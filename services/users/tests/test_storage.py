from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from meshplate_core.database import migrate, open_engine
from users.domain import EmailTakenError, UsernameTakenError, UserNotFoundError
from users.server import MIGRATIONS
from users.storage.tiers import TierStore
from users.storage.users import UserStore

from .factories import make_registration


async def test_created_user_is_found_by_username_and_id(engine: AsyncEngine) -> None:
    store = UserStore(engine)

    created = await store.create(make_registration(), hashed_password="h", tier_name="free")

    assert await store.get_by_username(created.username) == created
    assert await store.get_by_id(created.id) == created


async def test_new_user_gets_the_default_tier(engine: AsyncEngine) -> None:
    free = await TierStore(engine).ensure("free")

    created = await UserStore(engine).create(
        make_registration(), hashed_password="h", tier_name="free"
    )

    assert created.tier_id == free


async def test_missing_default_tier_means_no_tier(engine: AsyncEngine) -> None:
    created = await UserStore(engine).create(
        make_registration(), hashed_password="h", tier_name="gold"
    )

    assert created.tier_id is None


async def test_duplicate_username_is_taken(engine: AsyncEngine) -> None:
    store = UserStore(engine)
    await store.create(make_registration(username="ann"), hashed_password="h", tier_name="free")

    with pytest.raises(UsernameTakenError):
        await store.create(make_registration(username="ann"), hashed_password="h", tier_name="free")


async def test_duplicate_email_is_taken(engine: AsyncEngine) -> None:
    store = UserStore(engine)
    await store.create(make_registration(email="a@x.io"), hashed_password="h", tier_name="free")

    with pytest.raises(EmailTakenError):
        await store.create(make_registration(email="a@x.io"), hashed_password="h", tier_name="free")


async def test_concurrent_duplicates_give_one_user(engine: AsyncEngine) -> None:
    store = UserStore(engine)
    attempts = [make_registration(email="same@x.io") for _ in range(8)]

    results = await asyncio.gather(
        *(store.create(r, hashed_password="h", tier_name="free") for r in attempts),
        return_exceptions=True,
    )

    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, EmailTakenError) for r in results if isinstance(r, BaseException))


async def test_unknown_user_is_not_found(engine: AsyncEngine) -> None:
    with pytest.raises(UserNotFoundError):
        await UserStore(engine).get_by_username("nobody")


async def test_ensuring_a_tier_twice_concurrently_gives_one_tier(engine: AsyncEngine) -> None:
    store = TierStore(engine)

    ids = await asyncio.gather(*(store.ensure("pro") for _ in range(5)))

    assert len(set(ids)) == 1


async def test_concurrent_migrations_take_turns(make_database: object) -> None:
    assert callable(make_database)
    url = await asyncio.to_thread(make_database, "users_migrations")
    engines = [open_engine(url, pool_size=1, application_name="t") for _ in range(3)]
    try:
        await asyncio.gather(*(migrate(e, MIGRATIONS) for e in engines))
        created = await UserStore(engines[0]).create(
            make_registration(), hashed_password="h", tier_name="free"
        )
    finally:
        for e in engines:
            await e.dispose()

    assert created.id == 1


async def test_the_same_store_works_on_sqlite(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/users.db", pool_size=1, application_name="t")
    try:
        await migrate(engine, MIGRATIONS)
        await TierStore(engine).ensure("free")
        store = UserStore(engine)
        created = await store.create(
            make_registration(username="ann"), hashed_password="h", tier_name="free"
        )
        with pytest.raises(UsernameTakenError):
            await store.create(
                make_registration(username="ann"), hashed_password="h", tier_name="free"
            )
        found = await store.get_by_username("ann")
    finally:
        await engine.dispose()

    assert found == created
    assert found.created_at.tzinfo is not None
