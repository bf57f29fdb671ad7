"""Real receivers on 127.0.0.1 for notification tests: an SMTP server (aiosmtpd) and an HTTP webhook
receiver that checks Steward's HMAC signature and can be told to fail its first requests."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpSink:
    """An SMTP server that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in m["To"]]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Accepts POSTs on /<name>, checks X-Steward-Signature with the secret registered for <name>;
    answers 500 to the first ``fail_first[name]`` requests of a name."""

    secrets: dict[str, str] = field(default_factory=dict)
    fail_first: dict[str, int] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                name = self.path.strip("/")
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.attempts[name] = receiver.attempts.get(name, 0) + 1
                if receiver.attempts[name] <= receiver.fail_first.get(name, 0):
                    self.send_response(500)
                    self.end_headers()
                    return
                secret = receiver.secrets.get(name, "")
                timestamp = self.headers.get("X-Steward-Timestamp", "")
                expected = (
                    "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
                )
                ok = bool(secret) and hmac.compare_digest(expected, self.headers.get("X-Steward-Signature", ""))
                receiver.received.append(Received(self.path, dict(self.headers.items()), body, ok))
                self.send_response(200 if ok else 401)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def at(self, name: str) -> list[Received]:
        return [r for r in self.received if r.path.strip("/") == name]


def wait_for(condition, timeout: float = 30.0, what: str = "the condition") -> None:
    """Poll ``condition`` until it is true (a real worker delivers in its own time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
