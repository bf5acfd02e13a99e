"""A real SMTP server for tests (aiosmtpd), with a mailbox and scripted refusals.

It runs on its own thread and loop, on a free loopback port. `refuse(code, times)` makes the
next `times` recipients be answered with `code` (451: try later; 550: never), so a test can make
a relay fail for a while, or for good, and see what the sender does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from meshplate_testing.servers import free_port


class Mailbox:
    """What the server accepted, and what it was told to refuse."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._messages: list[Message] = []
        self._refusals: list[str] = []
        self.refused = 0

    def refuse(self, code: int, *, times: int = 1_000_000) -> None:
        """Answer the next `times` recipients with `code`."""
        with self._lock:
            self._refusals = [f"{code} scripted refusal"] * times

    @property
    def messages(self) -> list[Message]:
        """The accepted messages, oldest first."""
        with self._lock:
            return list(self._messages)

    async def wait_for(self, count: int, *, timeout_s: float) -> list[Message]:
        """The messages once at least `count` arrived."""
        async with asyncio.timeout(timeout_s):
            while True:
                if len(messages := self.messages) >= count:
                    return messages
                await asyncio.sleep(0.02)

    # aiosmtpd handler hooks.
    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        with self._lock:
            if self._refusals:
                self.refused += 1
                return self._refusals.pop()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            self._messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    """A running SMTP server on 127.0.0.1 and its mailbox; stopped on exit."""
    mailbox = Mailbox(free_port())
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()
