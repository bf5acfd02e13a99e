"""A mail catcher standing in for Mailpit: SMTP on 1025 keeps every message in memory, and HTTP
on 8025 lists them as Mailpit's API does (GET /api/v1/messages: newest first, with ID, From,
To, Subject and Snippet), so what reads Mailpit reads this. Debian's Python and aiosmtpd only."""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
import signal
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


class Mailbox:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain", "html"))
        text = body.get_content() if body is not None else ""
        summary = {
            "ID": uuid.uuid4().hex,
            "From": (_addresses(message.get_all("From", [])) or [_NOBODY])[0],
            "To": _addresses(message.get_all("To", [])),
            "Subject": message.get("Subject", ""),
            "Snippet": " ".join(text.split())[:250],
        }
        with self._lock:
            self._messages.insert(0, summary)
        return "250 OK"

    def listing(self) -> dict[str, Any]:
        with self._lock:
            return {"total": len(self._messages), "messages": list(self._messages)}


_NOBODY = {"Name": "", "Address": ""}


def _addresses(values: list[Any]) -> list[dict[str, str]]:
    """Every address of the header's values (one `To:` may name several)."""
    pairs = email.utils.getaddresses([str(value) for value in values])
    return [{"Name": name, "Address": address} for name, address in pairs]


def serve() -> None:
    mailbox = Mailbox()

    class Api(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/api/v1/messages":
                self.send_error(404)
                return
            payload = json.dumps(mailbox.listing()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    smtp = Controller(mailbox, hostname="0.0.0.0", port=1025)
    smtp.start()
    http = ThreadingHTTPServer(("0.0.0.0", 8025), Api)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=http.shutdown).start())
    sys.stderr.write("mail: SMTP on 1025, messages on http://0.0.0.0:8025/api/v1/messages\n")
    try:
        http.serve_forever()
    finally:
        smtp.stop()


if __name__ == "__main__":
    serve()
