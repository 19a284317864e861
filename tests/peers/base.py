"""A real HTTP server on loopback for an ILS peer: it records each call, answers through the
peer's ``handle``, checks every JSON answer against the peer's spec, and injects faults."""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from tests.peers.people import ADA
from tests.peers.spec import Spec


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def text(cls, status: int, text: str) -> Answer:
        return cls(status, text.encode(), [("Content-Type", "text/plain")])


class Gate:
    """Holds each caller until ``expected`` callers have come or ``timeout`` has passed: a
    renewal that is not serialised lets a second caller in, and then both go on at once."""

    def __init__(self, expected: int = 2, timeout: float = 0.5) -> None:
        self.expected = expected
        self.timeout = timeout
        self.arrived = 0
        self._condition = threading.Condition()

    def arrive(self) -> None:
        with self._condition:
            self.arrived += 1
            self._condition.notify_all()
            self._condition.wait_for(lambda: self.arrived >= self.expected, self.timeout)


class Peer:
    """Subclasses implement ``handle``. Faults apply to the data endpoints (``fault()``):
    ``status`` answers that status, ``delay`` answers that late, ``malformed`` sends broken
    JSON."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.calls: list[Call] = []
        self.violations: list[str] = []  # answers the published definitions do not allow
        self.status: int | None = None
        self.delay = 0.0
        self.malformed = False
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def handle(self, call: Call) -> Answer:
        raise NotImplementedError

    def start(self) -> Self:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                call = Call(
                    self.command,
                    url.path,
                    urllib.parse.parse_qs(url.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(int(self.headers.get("Content-Length", 0))),
                )
                with peer._lock:
                    peer.calls.append(call)
                answer = peer.handle(call)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    return

            def log_message(self, *args: Any) -> None:  # keep the test output quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server = self._server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()  # a short poll: stop() returns at once
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._stopping.set()  # a delayed answer goes out now
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return sum(1 for c in self.calls if c.method == method and c.path == path)

    def json(self, status: int, value: Any, schema: str | dict[str, Any], **headers: str) -> Answer:
        """A JSON answer, checked against the spec first (a violation fails the test)."""
        for error in self.spec.errors(schema, value):
            with self._lock:
                self.violations.append(f"{status} {schema}: {error}")
        extra = [(k.replace("_", "-"), v) for k, v in headers.items()]
        return Answer(
            status, json.dumps(value).encode(), [("Content-Type", "application/json"), *extra]
        )

    def fault(self) -> Answer | None:
        """The injected fault for a data endpoint, if any (after the injected delay)."""
        if self.delay:
            self._stopping.wait(self.delay)
        if self.malformed:  # a real answer cut short, patron data and all
            cut = json.dumps([{"status": "W", "surname": ADA.last, "card": ADA.card}])[:-3]
            return Answer(200, cut.encode(), [("Content-Type", "application/json")])
        if self.status is not None:
            return self.fault_answer(self.status)
        return None

    def fault_answer(self, status: int) -> Answer:
        return Answer.text(status, "Internal server error")
