from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from meshplate_core.database import async_url, open_engine, ping, wait_until_up
from meshplate_testing.proxy import TcpProxy


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg"),
        ("sqlite:///var/x.db", "sqlite+aiosqlite"),
    ],
)
def test_plain_urls_get_the_async_driver(url: str, driver: str) -> None:
    assert async_url(url).drivername == driver


def test_other_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        async_url("mysql://u@h/db")


async def test_sqlite_file_gets_its_folder_and_answers(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/deep/er/x.db", pool_size=1, application_name="t")
    try:
        await ping(engine, timeout_s=2)
    finally:
        await engine.dispose()

    assert (tmp_path / "deep" / "er" / "x.db").exists()


async def test_ping_fails_when_nothing_listens() -> None:
    engine = open_engine("postgresql://nobody@127.0.0.1:1/none", pool_size=1, application_name="t")
    try:
        with pytest.raises(OSError, match=r"Connect call failed|refused"):
            await ping(engine, timeout_s=2)
    finally:
        await engine.dispose()


def test_a_service_that_does_not_migrate_never_loads_alembic() -> None:
    # About 12 MiB of each service's memory: a Deployment's migrations run as a Job.
    probe = (
        "import sys, auth.server, users.server, ratelimit.server; print('alembic' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )

    assert result.stdout.strip() == "False"


async def test_waiting_returns_once_a_late_database_answers(postgres_proxy: TcpProxy) -> None:
    await postgres_proxy.cut()
    engine = open_engine(
        f"postgresql://postgres@127.0.0.1:{postgres_proxy.port}/postgres",
        pool_size=1,
        application_name="t",
    )
    waiting = asyncio.create_task(wait_until_up(engine, within_s=30, retry_s=0.1))
    try:
        await asyncio.sleep(1)
        refused_so_far = not waiting.done()
        await postgres_proxy.open()
        await asyncio.wait_for(waiting, timeout=10)
    finally:
        await engine.dispose()

    assert refused_so_far


async def test_waiting_gives_up_with_the_last_error() -> None:
    engine = open_engine("postgresql://nobody@127.0.0.1:1/none", pool_size=1, application_name="t")
    try:
        with pytest.raises(ConnectionRefusedError):
            await wait_until_up(engine, within_s=0.3, retry_s=0.1)
    finally:
        await engine.dispose()


async def test_a_database_that_answers_no_is_not_waited_for(postgres_dsn: str) -> None:
    # A missing database will not appear by waiting: the error is raised at once, not after
    # the minute it would otherwise wait (longer than the test's own timeout).
    url = postgres_dsn.rsplit("/", 1)[0] + "/no_such_database"
    engine = open_engine(url, pool_size=1, application_name="t")
    try:
        with pytest.raises(DBAPIError, match="no_such_database"):
            await wait_until_up(engine, within_s=120, retry_s=100)
    finally:
        await engine.dispose()
