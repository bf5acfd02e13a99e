"""A real PgBouncer (Debian's `pgbouncer`) in transaction pooling mode in front of the test
PostgreSQL server, as production sites run one: `pool_size` server connections per database,
however many clients connect, each transaction on whichever server connection is free.

Its configuration is what docs/deploying.md recommends: `server_reset_query = DISCARD ALL` run
after every transaction (`server_reset_query_always`), so nothing a transaction leaves on a server
connection (a prepared statement, a setting) reaches the next client's transaction.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from meshplate_testing.servers import free_port, postgres_answers, wait_until

_CONFIG = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {folder}/users.txt
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 500
server_reset_query = DISCARD ALL
server_reset_query_always = 1
ignore_startup_parameters = extra_float_digits
admin_users = {user}
"""


class ThrowawayPgBouncer:
    """PgBouncer on a free port, for the PostgreSQL server of `postgres_dsn` (trust auth)."""

    def __init__(self, postgres_dsn: str, *, pool_size: int) -> None:
        binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
        if binary is None:
            pytest.exit("no PgBouncer: install the Debian package 'pgbouncer'", returncode=3)
        server = urlsplit(postgres_dsn)
        self.folder = Path(tempfile.mkdtemp(prefix="meshplate-pgbouncer-"))
        self.port = free_port()
        (self.folder / "pgbouncer.ini").write_text(
            _CONFIG.format(
                host=server.hostname or "127.0.0.1",
                port=server.port or 5432,
                listen=self.port,
                folder=self.folder,
                pool_size=pool_size,
                user=server.username or "postgres",
            )
        )
        (self.folder / "users.txt").write_text(f'"{server.username or "postgres"}" ""\n')
        # PgBouncer refuses to run as root; root runs it as the 'postgres' system user.
        user = ["-u", "postgres"] if os.geteuid() == 0 else []
        for path in (self.folder, *self.folder.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        self._argv = [binary, *user, str(self.folder / "pgbouncer.ini")]
        self._user = server.username or "postgres"
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, database_url: str) -> str:
        """`database_url`'s database, reached through this PgBouncer (`?pgbouncer=true`)."""
        database = urlsplit(database_url).path.lstrip("/")
        return f"postgresql://{self._user}@127.0.0.1:{self.port}/{database}?pgbouncer=true"

    def show(self, what: str) -> list[dict[str, str]]:
        """A `SHOW <what>` of its admin console (CLIENTS, SERVERS, POOLS...), one dict a row.
        The console speaks only the simple query protocol: asked through psql."""
        psql = shutil.which("psql") or next(iter(glob.glob("/usr/lib/postgresql/*/bin/psql")), "")
        dsn = f"postgresql://{self._user}@127.0.0.1:{self.port}/pgbouncer"
        answer = subprocess.run(
            [psql, dsn, "--csv", "-c", f"SHOW {what}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return list(csv.DictReader(io.StringIO(answer.stdout)))

    def start(self) -> None:
        """Start it; return once it answers."""
        with (self.folder / "pgbouncer.log").open("wb") as log:
            self._process = subprocess.Popen(self._argv, stdout=log, stderr=log)
        dsn = f"postgresql://{self._user}@127.0.0.1:{self.port}/postgres"
        wait_until(lambda: postgres_answers(dsn), timeout_s=10, what="pgbouncer")

    def stop(self) -> None:
        """Stop it (SIGTERM)."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None


@contextlib.contextmanager
def running_pgbouncer(postgres_dsn: str, *, pool_size: int) -> Iterator[ThrowawayPgBouncer]:
    """A started ThrowawayPgBouncer, stopped and removed on exit."""
    server = ThrowawayPgBouncer(postgres_dsn, pool_size=pool_size)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)
