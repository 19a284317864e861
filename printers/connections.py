"""Getting bytes to a receipt printer: network (raw TCP 9100), USB, serial, device file, CUPS,
and the preview "printer" that writes files.

One connection per job, with short timeouts (python-escpos's Network default of 60 s would hold
the queue for a minute per dead printer). Where the printer can answer ESC/POS real-time status
requests (DLE EOT), it is asked before and after each slip: a print server whose printer is off,
or a printer out of paper, can accept bytes without an error, and a slip that was swallowed must
stay queued.

Where the profile supports it, the slip ends with ``GS ( H`` <Function 48>, a process ID that
the printer sends back (``37h 22h d1 d2 d3 d4 00h``) once everything before it has printed: that
answer, not the absence of an error, is what "printed" means for such a printer. A network
printer that stops answering on an open connection (it stopped reading: cover open, paper out,
a jam) is not given up on: the caller gets the connection back as :class:`Held` and asks it
again later, because the slip is inside the printer and will print when it is freed; sending it
again would print it twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from holdshelf.printers.config import AGENT, PrinterSettings
from holdshelf.printers.render_escpos import escpos, profile_for, quiet_root_logging

DLE_EOT = b"\x10\x04"
PRINTER_STATUS, OFFLINE_CAUSE, PAPER_STATUS = 1, 2, 4
STATUS_REQUESTS = b"".join(
    DLE_EOT + bytes([n]) for n in (PRINTER_STATUS, OFFLINE_CAUSE, PAPER_STATUS)
)
STATUS_TIMEOUT = 2.0  # seconds to wait for a status byte
# GS ( H pL=6 pH=0 fn=48 m=48, then the four ID characters (32-126): Epson's "Specifies the
# process ID response". Its answer is "header to NUL": 37h, identifier 22h, the ID, 00h.
PROCESS_ID_COMMAND = b"\x1d(H\x06\x00\x30\x30"
RECEIPT_HEADER, RECEIPT_ID = 0x37, 0x22
RECEIPT_WAIT = 5.0  # seconds a slip may take to print before its connection is held instead
PREVIEW_KEEP = 200  # newest preview slips kept in the instance folder
Preview = Callable[[], bytes] | None  # draws the PNG, for printers that keep one


class PrinterError(Exception):
    """The printer could not take the job. The message is for staff and names no patron.

    ``maybe_printed``: the slip's bytes had started to leave, so the printer may print it
    (all or part); ``accepted``: it had read every byte and said it was online.
    """

    def __init__(self, message: str, *, maybe_printed: bool = False, accepted: bool = False):
        super().__init__(message)
        self.maybe_printed = maybe_printed or accepted
        self.accepted = accepted


@dataclass
class Attempt:
    """One try at a slip, as the caller follows it: ``process_id`` (for printers that answer
    GS ( H), and hooks called just before the first byte of the slip goes out and when the
    printer has read it all and said it was online (the caller commits each, so a crash
    leaves a record of how far the slip got)."""

    process_id: str | None = None
    on_sending: Callable[[], None] = lambda: None
    on_accepted: Callable[[], None] = lambda: None


def process_id_command(process_id: str) -> bytes:
    if len(process_id) != 4 or not all(32 <= ord(c) <= 126 for c in process_id):
        raise ValueError("a process ID is four characters from space to tilde")
    return PROCESS_ID_COMMAND + process_id.encode("ascii")


@dataclass(frozen=True)
class PrinterStatus:
    reachable: bool
    online: bool | None = None  # None: the printer does not answer status requests
    paper: str = "unknown"  # ok | low | out | unknown
    detail: str = ""

    def describe(self) -> str:
        if not self.reachable:
            return f"unreachable: {self.detail}"
        if self.online is None:
            return f"reachable{f' ({self.detail})' if self.detail else ''}"
        state = "online" if self.online else f"offline ({self.detail or 'check the printer'})"
        return f"{state}, paper {self.paper}"


def parse_status(printer_byte: int, cause_byte: int, paper_byte: int) -> PrinterStatus:
    """Interpret the answers to DLE EOT 1, 2 and 4 (ESC/POS real-time status)."""
    for byte in (printer_byte, cause_byte, paper_byte):
        if byte & 0x93 != 0x12:  # fixed bits: 0 and 7 clear, 1 and 4 set
            raise PrinterError(f"the printer sent an invalid status byte 0x{byte:02x}")
    causes = [
        text
        for bit, text in ((0x04, "cover open"), (0x20, "paper out"), (0x40, "printer error"))
        if cause_byte & bit
    ]
    paper = "out" if paper_byte & 0x60 else "low" if paper_byte & 0x0C else "ok"
    online = not printer_byte & 0x08 and paper != "out"
    return PrinterStatus(True, online, paper, ", ".join(causes))


class Replies:
    """What a printer sends back, sorted: one-byte status answers (fixed bits 0x12 under mask
    0x93) and "header to NUL" process ID responses. Anything else (an ASB block, another
    command's answer) is skipped a byte at a time: never mistaken for either."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.statuses: list[int] = []
        self.receipts: list[str] = []

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while self._buffer:
            first = self._buffer[0]
            if first & 0x93 == 0x12:
                self.statuses.append(first)
                del self._buffer[0]
            elif first == RECEIPT_HEADER:
                end = self._buffer.find(0, 1)
                if end == -1:
                    return  # the rest of the block is still on its way
                block = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                if len(block) == 7 and block[1] == RECEIPT_ID:
                    self.receipts.append(block[2:6].decode("ascii", "replace"))
            else:
                del self._buffer[0]

    def take_status(self) -> PrinterStatus | None:
        """The answers to one DLE EOT 1, 2, 4 round, once all three are in."""
        if len(self.statuses) < 3:
            return None
        answers, self.statuses = self.statuses[:3], self.statuses[3:]
        return parse_status(*answers)


class Held:
    """A network connection whose slip has gone out, waiting for the printer's word: the
    answer to the status requests after the slip, then (where asked for) the process ID.

    ``wait`` says whether the slip has printed: its process ID came back or, where none was
    asked for, the printer read the whole slip and said it was online (``accepted``). It raises
    :class:`PrinterError` when the connection is lost or, without a process ID to wait for,
    the printer says it cannot print."""

    def __init__(
        self, sock: socket.socket, replies: Replies, *, status: bool, process_id: str | None
    ) -> None:
        self.sock = sock
        self.replies = replies
        self.process_id = process_id
        self.needs_status = status  # the answers to the status requests after the slip
        self.accepted = False
        self.since = time.monotonic()

    def wait(self, seconds: float, *, until_answered: bool = False) -> bool:
        """Read for up to ``seconds`` (0: only what has arrived) until the slip has printed or,
        with ``until_answered``, until the status requests are answered."""
        deadline = time.monotonic() + seconds
        while True:
            if self._printed():
                return True
            if until_answered and not self.needs_status:
                return False
            remaining = deadline - time.monotonic()
            if not self._read(max(0.0, remaining)) and remaining <= 0:
                return False

    def close(self) -> None:
        self.sock.close()

    def _printed(self) -> bool:
        if self.needs_status:
            status = self.replies.take_status()
            if status is None:
                return False
            self.needs_status = False
            if status.online:
                self.accepted = True
            elif self.process_id is None:  # nothing will say when it prints: try again
                self.close()
                problem = status.detail or ("paper out" if status.paper == "out" else "offline")
                raise PrinterError(
                    f"printer not ready after printing: {problem}", maybe_printed=True
                )
            # else it has the slip and prints it once it is back: its process ID will say so
        if self.process_id is None:
            return not self.needs_status
        return self.process_id in self.replies.receipts

    def _read(self, seconds: float) -> bool:
        """Feed what arrives within ``seconds``; False when nothing did."""
        try:
            ready, _, _ = select.select([self.sock], [], [], seconds)
            if not ready:
                return False
            data = self.sock.recv(4096)
        except OSError as exc:
            self.close()
            raise self._lost(f"the connection dropped ({exc.strerror or exc})") from None
        if not data:
            self.close()
            raise self._lost("the printer closed the connection")
        self.replies.feed(data)
        return True

    def _lost(self, why: str) -> PrinterError:
        state = "after reading the whole slip" if self.accepted else "after the slip was sent"
        return PrinterError(f"{why} {state}", maybe_printed=True, accepted=self.accepted)


class Connection(Protocol):
    def send(
        self,
        data: bytes,
        preview: Preview = None,
        label: str = "slip",
        attempt: Attempt | None = None,
    ) -> Held | None: ...

    def status(self) -> PrinterStatus: ...


class NetworkConnection:
    """A raw TCP printer (port 9100): Epson TM, Star and most network receipt printers."""

    def __init__(self, printer: PrinterSettings) -> None:
        self.printer = printer

    def _connect(self) -> socket.socket:
        address = f"{self.printer.host}:{self.printer.port}"
        try:
            sock = socket.create_connection(
                (self.printer.host, self.printer.port), timeout=self.printer.connect_timeout
            )
        except ConnectionRefusedError:
            raise PrinterError(f"{address} refused the connection (printer off?)") from None
        except TimeoutError:
            raise PrinterError(f"{address} did not answer (timed out)") from None
        except OSError as exc:
            raise PrinterError(f"{address} unreachable: {exc.strerror or exc}") from None
        sock.settimeout(self.printer.send_timeout)
        # Status requests are tiny writes each awaiting a reply: without this, Nagle's algorithm
        # and delayed ACKs add ~40 ms per request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def send(
        self,
        data: bytes,
        preview: Preview = None,
        label: str = "slip",
        attempt: Attempt | None = None,
    ) -> Held | None:
        """Print ``data``; returns None once the printer has it (see :class:`Held`), or the
        connection still waiting for the printer's answer."""
        attempt = attempt or Attempt()
        process_id = attempt.process_id if self.printer.process_id else None
        sock = self._connect()
        replies = Replies()
        try:
            if self.printer.verify_status:
                self._require_ready(sock, "before printing")
        except TimeoutError:
            sock.close()
            raise PrinterError("the printer stopped taking data (timed out)") from None
        except PrinterError:
            sock.close()
            raise
        except OSError as exc:  # nothing of the slip has gone out
            sock.close()
            raise PrinterError(f"the connection dropped before printing ({exc})") from None
        held = self._write(sock, replies, data, attempt, process_id)
        return self._settle(held, attempt)

    def _write(
        self,
        sock: socket.socket,
        replies: Replies,
        data: bytes,
        attempt: Attempt,
        process_id: str | None,
    ) -> Held:
        try:
            attempt.on_sending()
        except BaseException:
            sock.close()  # nothing of the slip has gone out
            raise
        tail = process_id_command(process_id) if process_id else b""
        try:
            sock.sendall(data + tail)
            if self.printer.verify_status:
                _drain(sock, replies)
                sock.sendall(STATUS_REQUESTS)
        except TimeoutError:
            sock.close()
            raise PrinterError(
                "the printer stopped taking data (timed out)", maybe_printed=True
            ) from None
        except OSError as exc:
            sock.close()
            raise PrinterError(
                f"the connection dropped while printing ({exc})", maybe_printed=True
            ) from None
        return Held(sock, replies, status=self.printer.verify_status, process_id=process_id)

    @staticmethod
    def _settle(held: Held, attempt: Attempt) -> Held | None:
        """Wait a little for the printer's answers; a printer that has not answered by then
        keeps the slip, and the connection is handed back to be asked again later."""
        try:
            printed = held.wait(STATUS_TIMEOUT, until_answered=True)
            if not printed and held.accepted:
                attempt.on_accepted()
            if not printed and not held.needs_status:  # it answered: give it time to print
                printed = held.wait(RECEIPT_WAIT)
        except BaseException:
            held.close()
            raise
        if printed:
            held.close()
            return None
        return held

    def status(self) -> PrinterStatus:
        try:
            with self._connect() as sock:
                if not self.printer.verify_status:
                    return PrinterStatus(True, detail="status requests switched off")
                return _query_status(sock)
        except PrinterError as exc:
            return PrinterStatus(False, detail=str(exc))
        except TimeoutError:
            return PrinterStatus(False, detail="no answer to the status request (timed out)")
        except OSError as exc:  # reset or closed while it answered (a printer rebooting)
            return PrinterStatus(False, detail=f"the connection dropped ({exc.strerror or exc})")

    def _require_ready(self, sock: socket.socket, when: str) -> None:
        status = _query_status(sock)
        if not status.online:
            problem = status.detail or ("paper out" if status.paper == "out" else "offline")
            raise PrinterError(f"printer not ready {when}: {problem}")


def _query_status(sock: socket.socket) -> PrinterStatus:
    answers = []
    for request in (PRINTER_STATUS, OFFLINE_CAUSE, PAPER_STATUS):
        sock.sendall(DLE_EOT + bytes([request]))
        answers.append(_read_byte(sock))
    return parse_status(*answers)


def _read_byte(sock: socket.socket) -> int:
    ready, _, _ = select.select([sock], [], [], STATUS_TIMEOUT)
    if not ready:
        raise PrinterError(
            "the printer did not answer a status request (printer off behind a print server? "
            "set verify_status = false for printers that cannot answer)"
        )
    data = sock.recv(1)
    if not data:
        raise PrinterError("the printer closed the connection")
    return data[0]


def _drain(sock: socket.socket, replies: Replies) -> None:
    """Discard status answers the printer sent unasked (to DLE EOT sequences that happened to
    occur inside image data) before asking for the real status; a process ID response that
    already came (a fast printer) is kept."""
    while select.select([sock], [], [], 0)[0]:
        data = sock.recv(4096)
        if not data:
            return
        replies.feed(data)
    replies.statuses.clear()


class EscposDeviceConnection:
    """USB, serial, device file and CUPS printers, through python-escpos's device classes."""

    def __init__(self, printer: PrinterSettings) -> None:
        self.printer = printer

    def _device(self) -> Any:
        printers = escpos().printer
        profile = self.printer.profile or "default"
        factories: dict[str, Callable[[], Any]] = {
            "usb": lambda: printers.Usb(
                self.printer.vendor_id, self.printer.product_id, profile=profile
            ),
            "serial": lambda: printers.Serial(
                self.printer.device,
                baudrate=self.printer.baudrate,
                timeout=self.printer.send_timeout,
                profile=profile,
            ),
            "file": lambda: printers.File(self.printer.device, profile=profile),
            "cups": lambda: printers.CupsPrinter(self.printer.queue, profile=profile),
        }
        profile_for(self.printer)  # a bad profile is a configuration error, said as such
        return factories[self.printer.type]()

    def send(
        self,
        data: bytes,
        preview: Preview = None,
        label: str = "slip",
        attempt: Attempt | None = None,
    ) -> Held | None:
        with quiet_root_logging():
            device = None
            try:
                try:
                    device = self._device()
                    device.open()
                except Exception as exc:  # python-escpos raises many kinds; none printed
                    raise PrinterError(_first_line(self.printer.target, exc)) from None
                (attempt or Attempt()).on_sending()  # its own errors are not the printer's
                try:
                    device._raw(data)
                except Exception as exc:  # part of the slip may have gone out
                    message = _first_line(self.printer.target, exc)
                    raise PrinterError(message, maybe_printed=True) from None
            finally:
                if device is not None:
                    with contextlib.suppress(Exception):
                        device.close()
        return None  # these cannot say more than that the bytes went out

    def status(self) -> PrinterStatus:
        if self.printer.type in {"file", "cups"}:
            return self._presence()
        with quiet_root_logging():
            try:
                device = self._device()
                device.open()
                try:
                    online = device.is_online()
                    paper = {2: "ok", 1: "low", 0: "out"}[device.paper_status()]
                finally:
                    device.close()
            except Exception as exc:
                return PrinterStatus(False, detail=str(exc).splitlines()[0])
        return PrinterStatus(True, online, paper)

    def _presence(self) -> PrinterStatus:
        if self.printer.type == "file":
            path = Path(self.printer.device)
            if path.exists():
                return PrinterStatus(True, detail="device file present; it cannot answer status")
            return PrinterStatus(False, detail=f"{path} does not exist")
        return PrinterStatus(True, detail="CUPS queue; CUPS reports its own status")


def _first_line(target: str, exc: Exception) -> str:
    return f"{target}: {exc}".splitlines()[0]


class PreviewConnection:
    """The embedded default: each slip becomes a PNG and a .bin file in ``slips/``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(
        self,
        data: bytes,
        preview: Preview = None,
        label: str = "slip",
        attempt: Attempt | None = None,
    ) -> Held | None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        (attempt or Attempt()).on_sending()
        # Real time, to the microsecond: the names sort in the order the slips came.
        stem = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-{label}"
        (self.folder / f"{stem}.bin").write_bytes(data)
        if preview is not None:
            (self.folder / f"{stem}.png").write_bytes(preview())
        for old in sorted(self.folder.glob("*.bin"))[:-PREVIEW_KEEP]:
            old.unlink(missing_ok=True)
            old.with_suffix(".png").unlink(missing_ok=True)
        return None

    def status(self) -> PrinterStatus:
        return PrinterStatus(True, online=True, paper="ok", detail=f"writes to {self.folder}")


class AgentPrinterConnection:
    """A printer only its branch print agent reaches (holdshelf.agents): nothing to send to
    from here, and no status to ask (the agent reports it)."""

    def send(
        self,
        data: bytes,
        preview: Preview = None,
        label: str = "slip",
        attempt: Attempt | None = None,
    ) -> Held | None:
        raise PrinterError("this printer is printed to by its branch print agent, not from here")

    def status(self) -> PrinterStatus:
        return PrinterStatus(True, detail="its branch print agent reports its status")


def connect(printer: PrinterSettings, instance_dir: Path) -> Connection:
    if printer.type == AGENT:
        return AgentPrinterConnection()
    if printer.type == "network":
        return NetworkConnection(printer)
    if printer.type == "preview":
        return PreviewConnection(instance_dir / "slips")
    return EscposDeviceConnection(printer)
