"""Sending e-mail through an SMTP relay (aiosmtplib), with the relay's verdict made explicit.

A 5xx answer is permanent (the address does not exist, the message is refused): trying again
cannot help. Anything else (4xx, a refused or dropped connection, a timeout) may pass later.

Messages are made by the mailer, with the standard policy but a header registry that makes each
header's class once. The standard registry makes a new class every time a header is set or read
(`type(...)` in `HeaderRegistry.__getitem__`): about fifteen per welcome e-mail, each a reference
cycle only the cyclic collector frees, which a process tuned to collect rarely
(meshplate_core.heap) kept for minutes: the worker grew about 3 MiB a minute in the soak.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import default
from typing import Literal

import aiosmtplib

from worker.kinds import PermanentError


@dataclass(frozen=True)
class Relay:
    """Where and how to hand mail over."""

    host: str
    port: int
    tls: Literal["none", "starttls", "tls"]
    sender: str
    timeout_s: float
    username: str | None = None
    password: str | None = None


class HeaderClasses(HeaderRegistry):
    """The standard header registry, each header's class made once (see above)."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


class Mailer:
    """Makes messages and sends them through one relay."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay
        self._policy = default.clone(header_factory=HeaderClasses())

    def message(self) -> EmailMessage:
        """An empty message from the relay's sender."""
        message = EmailMessage(policy=self._policy)
        message["From"] = self._relay.sender
        return message

    async def send(self, message: EmailMessage) -> None:
        """Hand `message` to the relay; PermanentError when the relay refuses it for good."""
        relay = self._relay
        try:
            await aiosmtplib.send(
                message,
                hostname=relay.host,
                port=relay.port,
                use_tls=relay.tls == "tls",
                start_tls=relay.tls == "starttls",
                username=relay.username,
                password=relay.password,
                timeout=relay.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(refusal.code >= 500 for refusal in exc.recipients):
                raise PermanentError(_refusal(exc.recipients[0])) from None
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentError(f"SMTP {exc.code}: {exc.message}") from None
            raise


def _refusal(refusal: aiosmtplib.SMTPRecipientRefused) -> str:
    return f"SMTP {refusal.code} for {refusal.recipient}: {refusal.message}"
