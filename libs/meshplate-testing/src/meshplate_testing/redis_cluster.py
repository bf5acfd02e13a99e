"""A real Redis Cluster for tests: three masters and a replica of each, started from the local
`redis-server` binary on loopback ports, joined with `redis-cli --cluster create`.

Failover is quick (a node is deemed failed after `NODE_TIMEOUT_MS` without an answer), so a test
can kill a master with SIGKILL and wait for its replica to take its slots over.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from meshplate_testing.servers import free_port, redis_answers, wait_until

MASTERS = 3
NODE_TIMEOUT_MS = 1000


@dataclass
class Node:
    """One redis-server of the cluster."""

    port: int
    # The cluster bus (by default port + 10000, which may not exist or be free).
    bus_port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        """A plain (non-cluster) client of this node alone."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)

    def in_sync(self) -> bool:
        """A master, or a replica whose link to its master is up."""
        with self.client() as client:
            info = client.info("replication")
        return bool(info.get("role") == "master" or info.get("master_link_status") == "up")

    def cluster_info(self) -> dict[str, str]:
        with self.client() as client:
            text: str = client.execute_command("CLUSTER", "INFO").decode()
        return dict(line.split(":", 1) for line in text.split() if ":" in line)


class ThrowawayRedisCluster:
    """Three masters, each with one replica, on free loopback ports."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        cli = shutil.which("redis-cli")
        if binary is None or cli is None:
            pytest.exit("no Redis: install the Debian package 'redis-server'", returncode=3)
        self._binary = binary
        self._cli = cli
        self.folder = Path(tempfile.mkdtemp(prefix="meshplate-redis-cluster-"))
        self.nodes = [
            Node(port, free_port(), self.folder / str(port))
            for port in (free_port() for _ in range(2 * MASTERS))
        ]

    @property
    def url(self) -> str:
        """The cluster's URL (meshplate_core.redis_client): every master as a startup node."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes[:MASTERS])

    def start(self) -> None:
        """Start every node, join them (the first three masters, the rest their replicas),
        and return once every node sees all slots served."""
        for node in self.nodes:
            self._start(node)
        subprocess.run(
            [
                self._cli,
                "--cluster",
                "create",
                *(node.address for node in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.wait_healthy()

    def _start(self, node: Node) -> None:
        node.folder.mkdir(exist_ok=True)
        node.process = subprocess.Popen(
            [
                self._binary,
                "--port",
                str(node.port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(node.bus_port),
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(node.folder),
                "--logfile",
                "redis.log",
                # A replica's first full sync starts at once, not after the default 5 s.
                "--repl-diskless-sync-delay",
                "0",
            ],
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://{node.address}/0"
        wait_until(lambda: redis_answers(url), timeout_s=10, what="redis-server (cluster)")

    def wait_healthy(self, timeout_s: float = 20) -> None:
        """Until every running node reports the cluster ok (all slots served) and every running
        replica is in sync with its master (else it could not take over)."""

        def healthy() -> bool:
            try:
                return all(
                    node.cluster_info().get("cluster_state") == "ok" and node.in_sync()
                    for node in self.nodes
                    if node.process is not None
                )
            except redis.RedisError:
                return False

        wait_until(healthy, timeout_s=timeout_s, what="the Redis Cluster")

    def masters(self) -> list[Node]:
        """The running nodes that are masters now."""
        masters = []
        for node in self.nodes:
            if node.process is not None:
                with node.client() as client:
                    if client.execute_command("ROLE")[0] == b"master":
                        masters.append(node)
        return masters

    def master_of(self, key: str) -> Node:
        """The node serving `key`'s slot now (as a running node sees the cluster)."""
        slot = key_slot(key.encode())
        asked = next(node for node in self.nodes if node.process is not None)
        with asked.client() as client:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        for start, end, master, *_replicas in ranges:
            if start <= slot <= end:
                return next(node for node in self.nodes if node.port == int(master[1]))
        raise LookupError(f"no master serves slot {slot}")

    def wait_replicated(self, key: str, timeout_s: float = 10) -> None:
        """Until the replica of `key`'s master has every write the master has (replication is
        asynchronous: what a master acknowledged but had not yet passed on dies with it)."""
        master = self.master_of(key)

        def caught_up() -> bool:
            with master.client() as client:
                info = client.info("replication")
            offset = info["master_repl_offset"]
            replicas = [v for k, v in info.items() if k.startswith("slave") and k[5:].isdigit()]
            return bool(replicas) and all(replica["offset"] == offset for replica in replicas)

        wait_until(caught_up, timeout_s=timeout_s, what="replication")

    def kill(self, node: Node) -> None:
        """SIGKILL one node (no clean shutdown: its clients see the connection drop)."""
        if node.process is not None:
            node.process.kill()
            node.process.wait(10)
            node.process = None

    def fail_over(self, key: str, timeout_s: float = 20) -> Node:
        """Kill the master serving `key` and return once its replica serves the slot and the
        cluster is ok again; the killed node."""
        master = self.master_of(key)
        self.kill(master)
        self.wait_promoted(key, master, timeout_s)
        return master

    def wait_promoted(self, key: str, killed: Node, timeout_s: float = 20) -> None:
        """Until a node other than `killed` serves `key`'s slot, and the cluster is ok."""

        def promoted() -> bool:
            try:
                return self.master_of(key) is not killed
            except (redis.RedisError, LookupError):
                return False

        wait_until(promoted, timeout_s=timeout_s, what="the replica's promotion")
        self.wait_healthy(timeout_s)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            if node.process is not None:
                node.process.terminate()
                node.process.wait(10)
                node.process = None


@contextlib.contextmanager
def running_redis_cluster() -> Iterator[ThrowawayRedisCluster]:
    """A started ThrowawayRedisCluster, stopped and removed on exit."""
    cluster = ThrowawayRedisCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.folder, ignore_errors=True)
