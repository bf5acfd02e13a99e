"""Client channels that pick up a renewed certificate.

A grpc.aio channel keeps the credentials it was opened with, while cert-manager renews a
workload's certificate in place weeks before the old one expires (meshplate_core.mtls reads the
folder). `RenewingChannel` is what the stubs hold: it hands each call to its current channel,
and once `tls.crt` has changed (looked at from the calls themselves, at most every `check_s`)
opens a fresh channel with the new files, then closes the old one after `grace_s`, so the calls
already on it finish. A folder caught half-written keeps the current channel until it is whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, cast

import grpc

from meshplate_core.mtls import Tls

Open = Callable[[], grpc.aio.Channel]


class RenewingChannel(grpc.aio.Channel):
    """A channel whose connections move to a fresh channel when the certificate is renewed."""

    def __init__(
        self, open_channel: Open, tls: Tls, *, check_s: float = 10.0, grace_s: float = 60.0
    ):
        self._renewed = tls.on_renewal(open_channel)
        self._check_s = check_s
        self._grace_s = grace_s
        self._channel = open_channel()
        self._next_check = time.monotonic() + check_s
        self._retiring: set[asyncio.Task[None]] = set()

    def current(self) -> grpc.aio.Channel:
        """The channel for a call now (a fresh one, when the certificate changed)."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self._check_s
            if (fresh := self._renewed()) is not None:
                self._retire_later(self._channel)
                self._channel = fresh
        return self._channel

    def _retire_later(self, old: grpc.aio.Channel) -> None:
        task = asyncio.get_running_loop().create_task(self._retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, old: grpc.aio.Channel) -> None:
        await asyncio.sleep(self._grace_s)
        await old.close()

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _Call(self, lambda channel: channel.unary_unary(*args, **kwargs))

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _Call(self, lambda channel: channel.unary_stream(*args, **kwargs))

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _Call(self, lambda channel: channel.stream_unary(*args, **kwargs))

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _Call(self, lambda channel: channel.stream_stream(*args, **kwargs))

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.current().get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self.current().wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self.current().channel_ready()

    async def close(self, grace: float | None = None) -> None:
        for task in list(self._retiring):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._channel.close(grace)

    async def __aenter__(self) -> RenewingChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _Call:
    """A multi-callable of the channel current at each call (made again after a renewal)."""

    __slots__ = ("_callable", "_channel", "_make", "_owner")

    def __init__(self, owner: RenewingChannel, make: Callable[[grpc.aio.Channel], Any]) -> None:
        self._owner = owner
        self._make = make
        self._channel: grpc.aio.Channel | None = None
        self._callable: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        channel = self._owner.current()
        if channel is not self._channel:
            self._channel, self._callable = channel, self._make(channel)
        return cast(Any, self._callable)(*args, **kwargs)
