"""A network receipt printer played by a real TCP listener on 127.0.0.1.

It keeps the bytes of every connection, answers DLE EOT status requests like an Epson TM
printer, and answers GS ( H <Function 48> with the process ID response (37h 22h ID 00h) once
the data before it has "printed" (``print_seconds`` later). Faults on demand: stopped
(connections refused), paper out, silent (never answers a status request: a print server whose
printer is off), slow (each status answer comes late, as from a printer busy printing), closing
mid-job, dropping the connection after reading a whole slip but before answering (``drops``),
and stopping reading after the status check for ``stall_seconds`` and then printing what it
was sent (``stalls``).
"""

from __future__ import annotations

import contextlib
import re
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
    late_after_slip: float = 0.0  # seconds before the first status answer after a slip
    process_ids: bool = True  # answers GS ( H (an Epson TM-T88V does)
    print_seconds: float = 0.0  # from a slip's last byte to its process ID response
    drops: int = 0  # next connections dropped after reading a whole slip, before answering
    stalls: int = 0  # next connections that stop reading after the status check...
    stall_seconds: float = 0.0  # ...for this long, then read and print what was sent
    printing: threading.Event = field(default_factory=threading.Event)  # a slip's data arrived
    whole_slip: threading.Event = field(default_factory=threading.Event)  # ...all of it
    connections: list[bytes] = field(default_factory=list)
    slips: list[bytes] = field(default_factory=list)  # each whole slip, as soon as it is in
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
        answered_receipts = 0
        slip_in = False
        with self._lock:
            stall, self.stalls = self.stalls > 0, max(0, self.stalls - 1)
            drop, self.drops = self.drops > 0, max(0, self.drops - 1)
        with client:
            client.settimeout(30)
            # Each status answer goes out as it is made, as from a printer (without this,
            # Nagle's algorithm holds the second and third back for the first one's ACK).
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
                if not slip_in and (end := _slip_end(received)) > 0:
                    slip_in = True  # a receipt printer prints as it reads
                    with self._lock:
                        self.slips.append(bytes(received[received.find(b"\x1b@") : end]))
                    self.whole_slip.set()
                if self.close_after is not None and len(received) > self.close_after:
                    del received[self.close_after :]
                    client.shutdown(socket.SHUT_RDWR)
                    break
                if drop and slip_in:
                    client.shutdown(socket.SHUT_RDWR)  # the slip is in; no answer goes out
                    break
                try:
                    self._answer_status(client, received, before)
                    answered_receipts = self._answer_receipts(client, received, answered_receipts)
                except OSError:
                    break
                if stall and received.count(b"\x10\x04") >= 3 and b"\x1b@" not in received:
                    stall = False
                    time.sleep(self.stall_seconds)  # not reading: the sender's data waits
        with self._lock:
            if not slip_in and (end := _slip_end(received, closed=True)) > 0:
                self.slips.append(bytes(received[received.find(b"\x1b@") : end]))
            self.connections.append(bytes(received))
            self.last_byte_at.append(last)

    def _answer_receipts(self, client: socket.socket, received: bytearray, done: int) -> int:
        """Send the process ID of every complete GS ( H not answered yet, once the slip before
        it has printed; returns how many have been answered."""
        if not self.process_ids:
            return done
        found = list(re.finditer(rb"\x1d\(H\x06\x0000(.{4})", received, re.DOTALL))
        for match in found[done:]:
            # Printing takes a while; real-time status requests are still answered meanwhile.
            answer = b"\x37\x22" + match.group(1) + b"\x00"
            threading.Timer(self.print_seconds, _send_quietly, (client, answer)).start()
        return len(found)

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
                after_slip = 0 <= received.find(b"\x1b@") < index
                time.sleep(self.answer_delay + (self.late_after_slip if after_slip else 0))
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

    def printed(self, code: str) -> int:
        """How many whole slips carrying ``code`` (as displayed, "K7Q-4MX") were printed."""
        with self._lock:
            return sum(1 for slip in self.slips if code.encode() in slip)

    @property
    def jobs(self) -> list[bytes]:
        """Connections that carried a whole slip: initialised, and fed out for the cutter (which
        python-escpos sends last, whether or not the printer has one)."""
        with self._lock:
            return [c for c in self.connections if b"\x1b@" in c and b"\x1bd\x06" in c]


def _slip_end(received: bytearray, *, closed: bool = False) -> int:
    """Where the slip and what belongs to it end: the feed before the cut, the cut where the
    printer has a cutter, its process ID request where there is one; -1 while not all in
    (with nothing after the feed yet, only a closed connection says it is all)."""
    start = received.find(b"\x1b@")
    feed = received.rfind(b"\x1bd\x06", start) if start >= 0 else -1
    if feed < 0:
        return -1
    end = feed + 3
    if received[end : end + 2] == b"\x1dV":
        end += 4 if received[end + 2 : end + 3] in (b"A", b"B") else 3
    if received[end : end + 2] == b"\x1d(":  # its process ID request: the last of it
        end += 11
        return end if end <= len(received) else -1
    if end > len(received) or (end == len(received) and not closed):
        return -1
    return end


def _send_quietly(client: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the other side may have gone meanwhile
        client.sendall(data)
