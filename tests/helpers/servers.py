"""Real peers on loopback: an SMTP server (aiosmtpd) and an HTTP SMS gateway, with faults."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Mailbox:
    """An SMTP server's handler: keeps what it accepts; ``reply`` refuses recipients
    (e.g. "451 4.3.0 Try again later" or "550 5.1.1 No such user")."""

    port: int = field(default_factory=free_port)
    reply: str | None = None
    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    # TLS: "starttls" (required before AUTH and MAIL) or "tls" (implicit), with this context
    security: str = "none"
    tls_context: ssl.SSLContext | None = None
    login: tuple[str, str] | None = None  # required AUTH user and password
    lose_replies: int = 0  # next messages taken, then the connection closed before the "250"
    _controller: Any = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reply:
            return self.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        if self.lose_replies > 0:
            self.lose_replies -= 1
            server.transport.abort()  # the message is kept; its "250" never leaves
        return "250 Message accepted for delivery"

    def start(self) -> Mailbox:
        from aiosmtpd.controller import Controller

        options: dict[str, Any] = {}
        if self.security == "starttls":
            options.update(tls_context=self.tls_context, require_starttls=True)
        elif self.security == "tls":
            # aiosmtpd 1.4 does not see an implicit-TLS connection as TLS on Python 3.11 and
            # would hide AUTH; the connection is TLS by construction here
            options.update(ssl_context=self.tls_context, auth_require_tls=False)
        if self.login is not None:
            options.update(authenticator=self._authenticate, auth_required=True)
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **options)
        self._controller.start()
        return self

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        good = (
            isinstance(auth_data, LoginPassword)
            and (
                auth_data.login.decode(),
                auth_data.password.decode(),
            )
            == self.login
        )
        return AuthResult(success=good, handled=False)  # aiosmtpd answers 235 or 535

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def bodies(self) -> list[str]:
        """Every accepted message as text: headers and every part, decoded."""
        out = []
        for _, message in self.messages:
            parts = [str(message)]
            parts += [part.get_content() for part in message.walk() if not part.is_multipart()]
            out.append("\n".join(parts))
        return out


@dataclass
class SmsGateway:
    """An HTTP SMS gateway: records each POST; ``status`` is what it answers."""

    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> SmsGateway:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                gateway.requests.append(
                    {
                        "auth": self.headers.get("Authorization"),
                        "json": json.loads(body),
                        "path": self.path,
                        "status": gateway.status,
                    }
                )
                self.send_response(gateway.status)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:  # keep the test output quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/send"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def delivered(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["status"] < 300]
