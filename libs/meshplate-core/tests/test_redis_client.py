"""Redis URLs: one server or a cluster, and what a setting refuses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from meshplate_core.redis_client import checked, cluster_nodes, connect, get_many, is_cluster
from meshplate_core.settings import RedisUrl, ServiceSettings


class _Settings(ServiceSettings):
    redis_url: RedisUrl = "redis://127.0.0.1:6379/0"


def test_a_cluster_url_names_its_nodes_and_keeps_credentials_tls_and_options() -> None:
    url = "rediss+cluster://app:s3cret@redis-0:7000,redis-1:7001,10.0.0.3:7002?ssl_cert_reqs=none"

    first, nodes = cluster_nodes(url)

    assert is_cluster(url)
    assert first == "rediss://app:s3cret@redis-0:7000/0?ssl_cert_reqs=none"
    assert nodes == [("redis-0", 7000), ("redis-1", 7001), ("10.0.0.3", 7002)]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://redis-0:7000/3", "database 0 only"),
        ("redis+cluster://redis-0:7000,redis-1", "host:port"),
        ("redis+cluster://:7000", "host:port"),
        ("http://redis-0:6379", "redis://"),
    ],
)
def test_a_bad_redis_url_is_a_one_line_settings_error(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _Settings(redis_url=url, _env_file=None)


def test_one_server_and_cluster_urls_pass_as_they_are() -> None:
    for url in ("redis://h:6379/15", "rediss://h:6380/0", "redis+cluster://a:1,b:2"):
        assert checked(url) == url


async def test_connect_gives_the_client_the_url_names() -> None:
    one, cluster = connect("redis://127.0.0.1:6379/0"), connect("redis+cluster://127.0.0.1:7000")

    assert isinstance(one, Redis)
    assert isinstance(cluster, RedisCluster)
    await one.aclose()
    await cluster.aclose()


async def test_get_many_reads_keys_of_any_slots_in_order(flushed_redis: str) -> None:
    client = connect(flushed_redis)
    try:
        await client.set("{a}x", "1")
        await client.set("{b}y", "2")

        values = await get_many(client, ["{b}y", "missing", "{a}x"])
    finally:
        await client.aclose()

    assert values == [b"2", None, b"1"]
