"""The users service through PgBouncer in transaction pooling mode (`make test-scale` runs this
whole suite that way): many client connections, a pool of two server connections."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from meshplate.users.v1 import users_pb2
from meshplate_testing.pgbouncer import ThrowawayPgBouncer

from .conftest import sign_up

if TYPE_CHECKING:
    from meshplate.users.v1.users_pb2_grpc import UsersServiceAsyncStub


async def test_calls_at_once_share_the_poolers_few_server_connections(
    pooler: ThrowawayPgBouncer | None, users: UsersServiceAsyncStub
) -> None:
    if pooler is None:
        pytest.skip("runs through PgBouncer: make test-scale")

    people = await asyncio.gather(*(sign_up(users, f"user{n}") for n in range(4)))
    request = users_pb2.ListUsersRequest(page=1, items_per_page=10)
    pages = await asyncio.gather(*(users.ListUsers(request) for _ in range(40)))
    clients = [c for c in pooler.show("CLIENTS") if c["database"] == "meshplate_test_users"]
    servers = [s for s in pooler.show("SERVERS") if s["database"] == "meshplate_test_users"]
    pools = [p for p in pooler.show("POOLS") if p["database"] == "meshplate_test_users"]

    assert len({person.user_id for person in people}) == 4
    # The four and the first admin (made by the service's prepare step).
    assert {len(page.users) for page in pages} == {5}
    # The service's pool holds more connections than PgBouncer gives the database.
    assert len(clients) > len(servers), (clients, servers)
    assert 1 <= len(servers) <= 2, servers
    assert pools
