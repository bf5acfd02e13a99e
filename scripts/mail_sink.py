"""`make run`'s SMTP server: prints every message it accepts, stops cleanly on SIGTERM or Ctrl-C.

python scripts/mail_sink.py 127.0.0.1 1025
"""

from __future__ import annotations

import signal
import sys
import threading
from email import message_from_bytes
from typing import Any

from aiosmtpd.controller import Controller


class Printer:
    """An aiosmtpd handler that prints each message."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.content)
        recipients = ", ".join(envelope.rcpt_tos)
        print(f"--- mail from {envelope.mail_from} to {recipients}", flush=True)  # noqa: T201
        print(message.as_string().rstrip(), flush=True)  # noqa: T201
        return "250 Message accepted for delivery"


def main(host: str, port: int) -> int:
    """Serve until a signal."""
    controller = Controller(Printer(), hostname=host, port=port)
    controller.start()
    print(f"printing mail sent to {host}:{port}", flush=True)  # noqa: T201
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
