"""Redis clients from a URL: one server, or a Redis Cluster.

A plain `redis://` or `rediss://` URL names one server (redis-py's URL, database and options
included). A cluster URL names the cluster by some of its nodes, any of which tells the client the
rest:

    redis+cluster://[user:password@]host:port[,host:port...][?option=value...]
    rediss+cluster://...   (TLS)

Every key Meshplate writes is cluster-safe: keys that one script or transaction touches share a
hash tag (docs/deploying.md lists them), so the same code runs on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

# Either client: their commands are the same; what differs is where a command may go.
RedisClient = Redis | RedisCluster

# What a failed call raises: redis-py's errors, the OS's, and the cluster client's own, which
# redis-py does not derive from RedisError (no reachable node, a slot no master serves).
REDIS_FAILURES: tuple[type[Exception], ...] = (RedisError, OSError, RedisClusterException)

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster(url: str) -> bool:
    """Whether `url` names a Redis Cluster."""
    return url.partition("://")[0] in _CLUSTER_SCHEMES


def cluster_nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    """A cluster URL as the plain URL of its first node (credentials, TLS and options included)
    and every node's (host, port)."""
    scheme, _, rest = url.partition("://")
    if scheme not in _CLUSTER_SCHEMES:
        raise ValueError("not a Redis Cluster URL (redis+cluster:// or rediss+cluster://)")
    parts = urlsplit(f"{_CLUSTER_SCHEMES[scheme]}://{rest}")
    credentials, _, hosts = parts.netloc.rpartition("@")
    nodes = []
    for address in hosts.split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a cluster node must be host:port, not {address!r}")
        nodes.append((host, int(port)))
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has database 0 only")
    first = address_of(nodes[0])
    netloc = f"{credentials}@{first}" if credentials else first
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{netloc}/0{query}", nodes


def address_of(node: tuple[str, int]) -> str:
    """`host:port`."""
    return f"{node[0]}:{node[1]}"


def checked(url: str) -> str:
    """`url` if it names a Redis server or cluster (a settings validator), else ValueError."""
    scheme = url.partition("://")[0]
    if is_cluster(url):
        cluster_nodes(url)
    elif scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            "a Redis URL starts redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://"
        )
    return url


def connect(url: str, **options: Any) -> RedisClient:
    """A client of the server or cluster `url` names (no I/O yet); `options` are redis-py's
    (socket_timeout, socket_connect_timeout, ...), the same for both."""
    if not is_cluster(url):
        return Redis.from_url(url, **options)
    first, nodes = cluster_nodes(url)
    return RedisCluster.from_url(
        first, startup_nodes=[ClusterNode(host, port) for host, port in nodes], **options
    )


async def get_many(client: RedisClient, keys: Sequence[str]) -> list[Any]:
    """The values of `keys`, in order (None where missing). On one server, one MGET; on a
    cluster, an MGET per hash slot (so not one atomic read: callers must not need it)."""
    if isinstance(client, RedisCluster):
        return list(await client.mget_nonatomic(keys))
    return list(await client.mget(keys))
