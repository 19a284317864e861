"""ESC/POS bytes for a slip, rendered with python-escpos against the printer's profile.

python-escpos 3.1 calls ``logging.basicConfig()`` when imported and logs through the root
logger; it is imported here only, with a placeholder handler on the root logger so it installs
none of its own, and its loggers are kept at WARNING.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from types import ModuleType
from typing import Any

from holdshelf.printers.config import PAPER_DOTS, PrinterSettings
from holdshelf.printers.layout import QR, Block, Feed, Paper, Rotated, Text

from holdshelf.errors import ConfigError

ESC = b"\x1b"
# Letters that Unicode does not decompose into a base letter and an accent.
_LOOK_ALIKES = str.maketrans(
    {
        "Ł": "L",
        "ł": "l",
        "Ø": "O",
        "ø": "o",
        "Đ": "D",
        "đ": "d",
        "Œ": "OE",
        "œ": "oe",
        "Þ": "Th",
        "þ": "th",
        "ı": "i",
        "Ħ": "H",
        "ħ": "h",
    }
)
ROTATE_ON, ROTATE_OFF = ESC + b"V\x01", ESC + b"V\x00"


@contextmanager
def quiet_root_logging() -> Iterator[None]:
    """Give the root logger a handler for the duration, so ``logging.basicConfig()`` and the
    module-level ``logging.info()`` calls of python-escpos cannot install one on stderr."""
    root = logging.getLogger()
    placeholder = None if root.handlers else logging.NullHandler()
    if placeholder:
        root.addHandler(placeholder)
    try:
        yield
    finally:
        if placeholder:
            root.removeHandler(placeholder)


@cache
def escpos() -> ModuleType:
    with quiet_root_logging():
        import escpos.capabilities
        import escpos.printer
    logging.getLogger("escpos").setLevel(logging.WARNING)
    return escpos


@cache
def profile_for(printer: PrinterSettings) -> Any:
    """The python-escpos profile, with the paper width filled in where the profile lacks it
    (python-escpos would otherwise print a warning to stdout and not centre images)."""
    name = printer.profile or "default"
    try:
        profile = escpos().capabilities.get_profile(name)
    except KeyError:
        raise ConfigError(
            f"printers.{printer.name}.profile {name!r} is not a python-escpos printer profile"
        ) from None
    media = profile.profile_data["media"]
    if not isinstance(media["width"]["pixels"], int):
        dots = PAPER_DOTS[printer.paper]
        profile.profile_data = {
            **profile.profile_data,
            "media": {"dpi": 203, "width": {"mm": int(printer.paper[:2]), "pixels": dots}},
        }
    if printer.codepage not in profile.get_code_pages():
        raise ConfigError(
            f"printers.{printer.name}.codepage {printer.codepage} is not supported by "
            f"profile {name!r}"
        )
    return profile


@cache
def encoder_for(printer: PrinterSettings) -> Any:
    """python-escpos's encoder of the printer's code pages, shared by its slips: each new one
    built its table of the code page again, a third of the time a slip took to render."""
    return escpos().magicencode.Encoder(profile_for(printer).get_code_pages())


def paper_for(printer: PrinterSettings) -> Paper:
    return Paper(dots=int(profile_for(printer).profile_data["media"]["width"]["pixels"]))


def native_qr(printer: PrinterSettings) -> bool:
    if printer.qr == "auto":
        return bool(profile_for(printer).supports("qrCode"))
    return printer.qr == "native"


def printable(text: str, codepage: str) -> str:
    """``text`` as the code page can print it: accents dropped where needed, else "?"."""
    try:
        text.encode(codepage)
        return text  # most text: none of it needs a look character by character
    except UnicodeEncodeError:
        pass

    def fits(candidate: str) -> bool:
        try:
            candidate.encode(codepage)
        except UnicodeEncodeError:
            return False
        return True

    out = []
    for char in text:
        if fits(char):
            out.append(char)
            continue
        plain = "".join(
            c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
        ).translate(_LOOK_ALIKES)
        out.append(plain if plain and fits(plain) else "?")
    return "".join(out)


def render_escpos(blocks: list[Block], printer: PrinterSettings) -> bytes:
    profile = profile_for(printer)
    device = escpos().printer.Dummy(profile=printer.profile or "default")
    device.profile = profile  # ours knows the paper width
    device.magic.encoder = encoder_for(printer)
    device.hw("INIT")
    device.magic.force_encoding(printer.codepage)
    for block in blocks:
        _draw(device, block, printer)
    device.cut()
    return device.output


def _draw(device: Any, block: Block, printer: PrinterSettings) -> None:
    if isinstance(block, Text):
        device.set(
            align="center" if block.center else "left",
            bold=block.bold,
            invert=block.inverted,
            custom_size=True,
            width=block.scale,
            height=block.scale,
        )
        device.textln(block.text)
        device.set(bold=False, invert=False, normal_textsize=True)
    elif isinstance(block, QR):
        device.set(align="center")
        device.qr(block.payload, size=block.module, native=native_qr(printer), center=False)
        if native_qr(printer):
            device.ln()
    elif isinstance(block, Rotated):
        device._raw(ROTATE_ON)
        device.set(align="center", custom_size=True, width=block.scale, height=block.scale)
        for char in block.text:
            device.textln(char)
        device._raw(ROTATE_OFF)
        device.set(normal_textsize=True)
    elif isinstance(block, Feed):
        device.ln(block.lines)
