"""A network receipt printer played by a real TCP listener on 127.0.0.1.

It keeps the bytes of every connection and answers DLE EOT status requests like an Epson TM
printer. Faults on demand: stopped (connections refused), paper out, silent (never answers a
status request: a print server whose printer is off), slow (each status answer comes late, as
from a printer busy printing), or closing mid-job.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

ONLINE = 0x12  # DLE EOT 1/2/4 answer with only the fixed bits set
PAPER_END = ONLINE | 0x60  # DLE EOT 4: paper-end sensor
OFFLINE = ONLINE | 0x08  # DLE EOT 1: offline
PAPER_STOP = ONLINE | 0x20  # DLE EOT 2: printing stopped by paper end


@dataclass
class FakePrinter:
    port: int = 0
    paper_out: bool = False
    silent: bool = False
    close_after: int | None = None  # bytes of a job after which the connection is dropped
    reset_on_status: bool = False  # a status request resets the connection (a rebooting printer)
    answer_delay: float = 0.0  # seconds before each status answer
    printing: threading.Event = field(default_factory=threading.Event)  # a slip's data arrived
    connections: list[bytes] = field(default_factory=list)
    last_byte_at: list[float] = field(default_factory=list)  # perf_counter() per connection
    _server: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FakePrinter:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(8)
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening: new connections are refused, as by a printer switched off."""
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        received = bytearray()
        last = time.perf_counter()
        with client:
            client.settimeout(5)
            while True:
                try:
                    chunk = client.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                before = len(received)
                received += chunk
                last = time.perf_counter()
                if b"\x1b@" in received:  # ESC @ starts every slip
                    self.printing.set()
                if self.close_after is not None and len(received) > self.close_after:
                    del received[self.close_after :]
                    client.shutdown(socket.SHUT_RDWR)
                    break
                try:
                    self._answer_status(client, received, before)
                except OSError:
                    break
        with self._lock:
            self.connections.append(bytes(received))
            self.last_byte_at.append(last)

    def _answer_status(self, client: socket.socket, received: bytearray, before: int) -> None:
        if self.silent:
            return
        if self.reset_on_status and b"\x10\x04" in received:
            # SO_LINGER 0: close() sends a RST, so the other side's recv() fails
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            raise OSError("reset")
        start = max(0, before - 2)
        while (index := received.find(b"\x10\x04", start)) != -1 and index + 2 < len(received):
            answers = {
                1: ONLINE,
                2: PAPER_STOP if self.paper_out else ONLINE,
                4: PAPER_END if self.paper_out else ONLINE,
            }
            answer = answers.get(received[index + 2])
            if answer is not None and index + 2 >= before:  # not answered with an earlier chunk
                time.sleep(self.answer_delay)
                client.sendall(bytes([answer]))
            start = index + 3

    def wait_for_connections(self, count: int, timeout: float = 5.0) -> list[bytes]:
        """The first ``count`` finished connections, waiting for them to close."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.connections) >= count:
                    return list(self.connections)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} connections, saw {len(self.connections)}")

    @property
    def jobs(self) -> list[bytes]:
        """Connections that carried a whole slip: initialised, and fed out for the cutter (which
        python-escpos sends last, whether or not the printer has one)."""
        with self._lock:
            return [c for c in self.connections if b"\x1b@" in c and b"\x1bd\x06" in c]
