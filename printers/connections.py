"""Getting bytes to a receipt printer: network (raw TCP 9100), USB, serial, device file, CUPS,
and the preview "printer" that writes files.

One connection per job, with short timeouts (python-escpos's Network default of 60 s would hold
the queue for a minute per dead printer). Where the printer can answer ESC/POS real-time status
requests (DLE EOT), it is asked before and after each slip: a print server whose printer is off,
or a printer out of paper, can accept bytes without an error, and a slip that was swallowed must
stay queued.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import select
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from holdshelf.printers.config import PrinterSettings
from holdshelf.printers.render_escpos import escpos, profile_for, quiet_root_logging

DLE_EOT = b"\x10\x04"
PRINTER_STATUS, OFFLINE_CAUSE, PAPER_STATUS = 1, 2, 4
STATUS_TIMEOUT = 2.0  # seconds to wait for a status byte
PREVIEW_KEEP = 200  # newest preview slips kept in the instance folder
Preview = Callable[[], bytes] | None  # draws the PNG, for printers that keep one


class PrinterError(Exception):
    """The printer could not take the job. The message is for staff and names no patron."""


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


class Connection(Protocol):
    def send(self, data: bytes, preview: Preview = None, label: str = "slip") -> None: ...

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

    def send(self, data: bytes, preview: Preview = None, label: str = "slip") -> None:
        with self._connect() as sock:
            try:
                if self.printer.verify_status:
                    self._require_ready(sock, "before printing")
                sock.sendall(data)
                if self.printer.verify_status:
                    _drain(sock)
                    self._require_ready(sock, "after printing")
            except TimeoutError:
                raise PrinterError("the printer stopped taking data (timed out)") from None
            except (ConnectionError, OSError) as exc:
                raise PrinterError(f"the connection dropped while printing ({exc})") from None

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


def _drain(sock: socket.socket) -> None:
    """Discard bytes the printer sent unasked (status answers to DLE EOT sequences that
    happened to occur inside image data) before asking for the real status."""
    while select.select([sock], [], [], 0)[0]:
        if not sock.recv(4096):
            return


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

    def send(self, data: bytes, preview: Preview = None, label: str = "slip") -> None:
        with quiet_root_logging():
            device = None
            try:
                device = self._device()
                device.open()
                device._raw(data)
            except Exception as exc:  # python-escpos raises many kinds; all mean "not printed"
                raise PrinterError(f"{self.printer.target}: {exc}".splitlines()[0]) from None
            finally:
                if device is not None:
                    with contextlib.suppress(Exception):
                        device.close()

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


class PreviewConnection:
    """The embedded default: each slip becomes a PNG and a .bin file in ``slips/``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, data: bytes, preview: Preview = None, label: str = "slip") -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Real time, to the microsecond: the names sort in the order the slips came.
        stem = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-{label}"
        (self.folder / f"{stem}.bin").write_bytes(data)
        if preview is not None:
            (self.folder / f"{stem}.png").write_bytes(preview())
        for old in sorted(self.folder.glob("*.bin"))[:-PREVIEW_KEEP]:
            old.unlink(missing_ok=True)
            old.with_suffix(".png").unlink(missing_ok=True)

    def status(self) -> PrinterStatus:
        return PrinterStatus(True, online=True, paper="ok", detail=f"writes to {self.folder}")


def connect(printer: PrinterSettings, instance_dir: Path) -> Connection:
    if printer.type == "network":
        return NetworkConnection(printer)
    if printer.type == "preview":
        return PreviewConnection(instance_dir / "slips")
    return EscposDeviceConnection(printer)
