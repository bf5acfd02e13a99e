"""Hosts in separate networks on one machine: each one a Linux network namespace with an address
of its own on a bridge, whose link can be cut (every packet dropped both ways, silently: no reset,
no clean close, as when a host or its network fails) and mended; and a forwarder through which a
process inside reaches this machine's loopback servers (PostgreSQL, Redis) on the same ports.

Root only (`unavailable()` says why not, in a line fit for `pytest.skip`). Names carry this
process's id, so runs side by side never meet; everything is removed when the network closes.

    python -m meshplate_testing.netns <namespace> <module> [args...]

runs `python -m <module>` inside a namespace (what `Host.process` starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from meshplate_testing.processes import ServiceProcess

# setns(2)'s flag for a network namespace (Python 3.11 has no os.setns).
CLONE_NEWNET = 0x40000000
# Each network takes a /24 of this block that nothing on the machine uses yet.
PRIVATE_BLOCK = ipaddress.IPv4Network("10.77.0.0/16")
# A host's end of its link, inside its namespace.
INNER_LINK = "eth0"
_networks = itertools.count()

Handle = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class NetnsError(RuntimeError):
    """An `ip` or `tc` command failed (its own words are the message)."""


def _run(*command: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=10)
    except subprocess.TimeoutExpired:
        raise NetnsError(f"{' '.join(command)}: no answer within 10 s") from None
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


@contextlib.contextmanager
def inside(namespace: str) -> Iterator[None]:
    """This thread in `namespace`'s network for the block: sockets made meanwhile stay there
    (setns moves the calling thread only)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(target)
    finally:
        os.close(home)


@dataclass(frozen=True)
class Host:
    """A namespace on the network: its address, and the root namespace's end of its link."""

    name: str
    namespace: str
    address: str
    link: str

    def cut(self) -> None:
        """Drop every packet on the link, both ways, telling no one."""
        # The blackhole qdisc discards all it is given and reports success, as netem's "loss
        # 100%" does; it is built into every kernel with traffic control (netem is a module,
        # which some kernels, Firecracker's among them, lack).
        _run("tc", "qdisc", "replace", "dev", self.link, "root", "blackhole")
        _run("tc", "-n", self.namespace, "qdisc", "replace", "dev", INNER_LINK, "root", "blackhole")

    def mend(self) -> None:
        """Pass packets again (connections that survived the cut carry on)."""
        _run("tc", "qdisc", "del", "dev", self.link, "root")
        _run("tc", "-n", self.namespace, "qdisc", "del", "dev", INNER_LINK, "root")

    def process(self, module: str, *args: str, env: Mapping[str, str]) -> ServiceProcess:
        """`python -m <module>` to be started in this host's namespace."""
        return ServiceProcess(__name__, self.namespace, module, *args, env=env)


def _taken_networks() -> list[ipaddress.IPv4Network]:
    listed = _run("ip", "-4", "-o", "addr", "show") + _run(
        "ip", "-4", "route", "show", "table", "all"
    )
    networks = []
    for word in listed.split():
        with contextlib.suppress(ValueError):
            if "/" in word or word.count(".") == 3:
                networks.append(ipaddress.IPv4Network(word, strict=False))
    return networks


def _free_subnet() -> ipaddress.IPv4Network:
    taken = _taken_networks()
    subnets = list(PRIVATE_BLOCK.subnets(new_prefix=24))
    start = os.getpid() % len(subnets)
    for subnet in subnets[start:] + subnets[:start]:
        if not any(subnet.overlaps(other) for other in taken):
            return subnet
    raise NetnsError(f"no free /24 left in {PRIVATE_BLOCK}")


def _name_taken(tag: str) -> bool:
    links = _run("ip", "-o", "link", "show")
    namespaces = _run("ip", "netns", "list")
    return tag in links or tag in namespaces


class Network:
    """A bridge in the root namespace holding the first address of a free private /24, and hosts
    on it. As a context manager: everything made is removed at the end, even after a failure."""

    def __init__(self) -> None:
        self.tag = ""
        self.subnet = PRIVATE_BLOCK
        self.hosts: list[Host] = []
        # The commands that undo what was made, in the order it was made.
        self._undo: list[tuple[str, ...]] = []

    def __enter__(self) -> Network:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    @property
    def bridge_address(self) -> str:
        """The root namespace's address on the network."""
        return str(self.subnet.network_address + 1)

    def open(self) -> None:
        """Make the bridge, on names and a subnet nothing else uses."""
        # Interface names have 15 characters at most: mp<pid>n<count>v<host> fits.
        while _name_taken(tag := f"mp{os.getpid()}n{next(_networks)}"):
            pass
        self.tag, self.subnet = tag, _free_subnet()
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self._undo.append(("ip", "link", "del", self.bridge))
        _run("ip", "addr", "add", f"{self.bridge_address}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")

    def add(self, name: str) -> Host:
        """A new host named `name`: a namespace (loopback up) linked to the bridge by a veth."""
        index = len(self.hosts)
        host = Host(
            name=name,
            namespace=f"{self.tag}-{name}",
            address=str(self.subnet.network_address + 2 + index),
            link=f"{self.tag}v{index}",
        )
        _run("ip", "netns", "add", host.namespace)
        self._undo.append(("ip", "netns", "del", host.namespace))
        _run("ip", "-n", host.namespace, "link", "set", "lo", "up")
        _run(
            "ip", "link", "add", host.link, "type", "veth",
            "peer", "name", INNER_LINK, "netns", host.namespace,
        )  # fmt: skip
        self._undo.append(("ip", "link", "del", host.link))
        _run("ip", "link", "set", host.link, "master", self.bridge, "up")
        _run("ip", "-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", INNER_LINK)
        _run("ip", "-n", host.namespace, "link", "set", INNER_LINK, "up")
        self.hosts.append(host)
        return host

    def close(self) -> None:
        """Kill what still runs in the hosts (by pid), remove links, namespaces and the bridge."""
        for host in self.hosts:
            with contextlib.suppress(NetnsError):
                for pid in _run("ip", "netns", "pids", host.namespace).split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        # Links first (a veth goes with either end), then namespaces, then the bridge.
        for command in reversed(self._undo):
            with contextlib.suppress(NetnsError):
                _run(*command)
        self._undo.clear()
        self.hosts.clear()


def unavailable() -> str | None:
    """Why hosts cannot be made here, in one line (None when they can): not root, no iproute2,
    or a namespace, veth, bridge or qdisc the kernel refuses."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "network namespaces need iproute2 (ip and tc)"
    try:
        with Network() as network:
            network.add("probe").cut()
    except (NetnsError, OSError) as exc:
        return f"network namespaces unavailable: {exc}"
    return None


class Forwarder:
    """Accepts on 127.0.0.1:<port> inside a namespace and joins each connection to the same port
    of the root namespace's loopback, for each of `ports`. As an async context manager: listening
    for the block; then every forwarded connection is closed."""

    def __init__(self, namespace: str, ports: list[int]) -> None:
        self._namespace = namespace
        self._ports = ports
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._joined: set[asyncio.Future[Any]] = set()

    async def __aenter__(self) -> Forwarder:
        try:
            for port in self._ports:
                with inside(self._namespace):
                    listener = socket.create_server(("127.0.0.1", port))
                handle = self._handler(port)
                self._servers.append(await asyncio.start_server(handle, sock=listener))
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._joined, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    def _handler(self, port: int) -> Handle:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            self._writers |= {writer, up_writer}
            joined = asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
            self._joined.add(joined)
            joined.add_done_callback(self._joined.discard)
            await joined

        return handle

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            self._writers.discard(writer)


def main(argv: list[str]) -> None:
    """Enter namespace argv[0] for good, then become `python -m argv[1] argv[2:]` (the same
    process: a signal sent to it reaches the service)."""
    namespace, module, *args = argv
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    _setns(target)
    os.close(target)
    os.execv(sys.executable, [sys.executable, "-m", module, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
