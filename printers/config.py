"""A receipt printer as the instance configuration describes it.

``[printers.NAME]`` tables are merged onto ``[printer_defaults]`` (config/default.toml); this
module checks what the merged table means for each connection type.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from holdshelf import config_checks as checks
from holdshelf.errors import ConfigError

TYPES = ("network", "usb", "serial", "file", "cups", "preview", "agent")
# A printer at a branch the server cannot reach: a branch print agent (holdshelf print-agent)
# fetches its slips over HTTPS and names the printer itself, so the server knows no address.
AGENT = "agent"
QR_MODES = ("auto", "native", "raster")
# python-escpos profiles of the models whose Epson ESC/POS reference lists GS ( H <Function 48>
# (process ID response). "auto" uses it for these only: an unknown printer might print the
# command as text, or ignore it and leave every slip waiting for an answer that never comes.
PROCESS_ID_PROFILES = frozenset(
    {
        "TM-L90",
        "TM-P80",
        "TM-P80-42col",
        "TM-T20II",
        "TM-T20II-42col",
        "TM-T88IV",
        "TM-T88IV-SA",
        "TM-T88V",
        "TM-U220",
        "TM-U220B",
    }
)
# Printable dots across the paper where the profile does not say (203 dpi heads).
PAPER_DOTS = {"80mm": 576, "58mm": 384}
FONT_A = (12, 24)  # ESC/POS font A cell, in dots
DEFAULT_PORT = 9100


@dataclass(frozen=True)
class PrinterSettings:
    name: str
    type: str
    profile: str  # python-escpos profile name; "" = generic ESC/POS
    paper: str
    codepage: str
    qr: str
    wrap: bool
    host: str = ""
    port: int = 9100
    connect_timeout: float = 3.0
    send_timeout: float = 10.0
    verify_status: bool = True
    process_id: bool = False  # confirm each slip by the printer's process ID response
    vendor_id: int = 0
    product_id: int = 0
    device: str = ""
    baudrate: int = 9600
    queue: str = ""

    @property
    def target(self) -> str:
        """Where the bytes go, for staff-facing lists (no secrets in printer settings)."""
        return {
            "network": f"{self.host}:{self.port}",
            "usb": f"usb {self.vendor_id:04x}:{self.product_id:04x}",
            "serial": f"{self.device} @ {self.baudrate} baud",
            "file": self.device,
            "cups": f"cups queue {self.queue}",
            "preview": "PNG and .bin files in the instance folder",
            AGENT: "the branch print agent fetches its slips",
        }[self.type]


def printer_from_table(name: str, table: Mapping[str, Any]) -> PrinterSettings:
    where = f"printers.{name}."
    kind = checks.choice(table, "type", where, TYPES)
    paper = checks.choice(table, "paper", where, tuple(PAPER_DOTS))
    qr = checks.choice(table, "qr", where, QR_MODES)
    codepage = checks.text(table, "codepage", where).upper()
    try:
        codecs.lookup(codepage)
    except LookupError:
        raise ConfigError(f"{where}codepage {codepage!r} is not a known code page") from None
    settings = PrinterSettings(
        name=name,
        type=kind,
        profile=checks.text(table, "profile", where),
        paper=paper,
        codepage=codepage,
        qr=qr,
        wrap=checks.flag(table, "wrap", where),
        host=checks.text(table, "host", where),
        port=checks.whole(table, "port", where, 1, 65535),
        connect_timeout=checks.number(table, "connect_timeout", where, 0.1, 60),
        send_timeout=checks.number(table, "send_timeout", where, 0.1, 300),
        verify_status=checks.flag(table, "verify_status", where),
        process_id=_process_id(table, kind, where),
        vendor_id=_usb_id(table, "vendor_id", where),
        product_id=_usb_id(table, "product_id", where),
        device=checks.text(table, "device", where),
        baudrate=checks.whole(table, "baudrate", where, 300, 921600),
        queue=checks.text(table, "queue", where),
    )
    _require_connection_keys(settings, where)
    return settings


def _require_connection_keys(printer: PrinterSettings, where: str) -> None:
    needed = {
        "network": [("host", printer.host)],
        "usb": [("vendor_id", printer.vendor_id), ("product_id", printer.product_id)],
        "serial": [("device", printer.device)],
        "file": [("device", printer.device)],
        "cups": [("queue", printer.queue)],
        "preview": [],
        AGENT: [],
    }[printer.type]
    if printer.type == AGENT and (printer.host or printer.port != DEFAULT_PORT):
        raise ConfigError(
            f"{where}host and port are not for an agent printer: the agent at the branch "
            "names its printer (holdshelf print-agent --printer)"
        )
    for key, value in needed:
        if not value:
            raise ConfigError(f"{where}{key} is needed for a {printer.type} printer")


def _process_id(table: Mapping[str, Any], kind: str, where: str) -> bool:
    """true, false, or "auto": on for a network printer whose profile is known to answer."""
    value = table.get("process_id", "auto")
    if isinstance(value, bool):
        return value and kind == "network"  # only a network connection reads the answer
    if value != "auto":
        raise ConfigError(f'{where}process_id must be true, false or "auto"')
    return kind == "network" and table["profile"].strip() in PROCESS_ID_PROFILES


def _usb_id(table: Mapping[str, Any], key: str, where: str) -> int:
    """USB ids as integers or the hex strings lsusb shows ("04b8" or "0x04b8")."""
    value = table[key]
    try:
        number = int(value, 16) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ConfigError(f'{where}{key} must be a USB id such as "0x04b8"') from None
    if not 0 <= number <= 0xFFFF:
        raise ConfigError(f'{where}{key} must be a USB id such as "0x04b8"')
    return number
