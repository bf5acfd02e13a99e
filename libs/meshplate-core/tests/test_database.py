from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from meshplate_core.database import async_url, open_engine, ping


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
