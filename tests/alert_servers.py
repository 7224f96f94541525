"""Real servers on localhost that alerts are sent to in the tests: an HTTP server taking webhook
posts (as Slack's incoming webhooks do) and an SMTP server (aiosmtpd). Each puts what it receives
on a queue, so a test waits for an alert with a timeout instead of sleeping."""

from __future__ import annotations

import json
import queue
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

WAIT = 30  # seconds a test waits for an alert before failing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Webhook:
    url: str
    received: queue.Queue[dict]

    def next(self) -> dict:
        return self.received.get(timeout=WAIT)


@contextmanager
def webhook_server(status: int = 200) -> Iterator[Webhook]:
    received: queue.Queue = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put(
                {
                    "path": self.path,
                    "content_type": self.headers["Content-Type"],
                    "json": json.loads(body),
                }
            )
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Webhook(f"http://127.0.0.1:{server.server_port}/hooks/placelink", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Mailbox:
    host: str
    port: int
    received: queue.Queue[tuple[str, list[str], EmailMessage]]

    def next(self) -> tuple[str, list[str], EmailMessage]:
        return self.received.get(timeout=WAIT)


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    received: queue.Queue = queue.Queue()

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.put(
                (
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    message_from_bytes(envelope.content, policy=policy.default),
                )
            )
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    controller.start()  # returns once the server answers
    try:
        yield Mailbox(controller.hostname, controller.port, received)
    finally:
        controller.stop()


def alert_env(webhook: Webhook | None = None, mailbox: Mailbox | None = None) -> dict[str, str]:
    """PLACELINK_ALERT_* variables sending to these servers."""
    env = {
        "PLACELINK_ALERT_HUB_NAME": "test hub",
        "PLACELINK_ALERT_UI_URL": "http://127.0.0.1:3000",
    }
    if webhook:
        env["PLACELINK_ALERT_WEBHOOK_URL"] = webhook.url
    if mailbox:
        env |= {
            "PLACELINK_ALERT_SMTP_HOST": mailbox.host,
            "PLACELINK_ALERT_SMTP_PORT": str(mailbox.port),
            "PLACELINK_ALERT_SMTP_FROM": "hub@placelink.test",
            "PLACELINK_ALERT_SMTP_TO": "data-team@placelink.test, ig@placelink.test",
        }
    return env
