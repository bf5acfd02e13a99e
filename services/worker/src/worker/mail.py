"""Sending e-mail through an SMTP relay (aiosmtplib), with the relay's verdict made explicit.

A 5xx answer is permanent (the address does not exist, the message is refused): trying again
cannot help. Anything else (4xx, a refused or dropped connection, a timeout) may pass later.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

import aiosmtplib

from worker.outcomes import PermanentError


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


class Mailer:
    """Sends messages through one relay."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    @property
    def sender(self) -> str:
        """The From address of every message."""
        return self._relay.sender

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
