"""A strict reader of the ESC/POS bytes a printer receives, for assertions in tests.

It knows the commands Holdshelf sends and fails on anything else, so a test cannot pass by
overlooking bytes it does not understand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CODEPAGES = {0: "cp437", 2: "cp850", 16: "cp1252", 19: "cp858"}


@dataclass
class Style:
    width: int = 1
    height: int = 1
    bold: bool = False
    inverted: bool = False
    rotated: bool = False
    align: int = 0  # 0 left, 1 centre, 2 right


@dataclass(frozen=True)
class TextRun:
    text: str
    width: int
    height: int
    bold: bool
    inverted: bool
    rotated: bool
    align: int


@dataclass(frozen=True)
class Raster:
    width: int  # dots
    height: int
    rows: tuple[tuple[bool, ...], ...]


@dataclass
class Parsed:
    texts: list[TextRun] = field(default_factory=list)
    qr_payloads: list[str] = field(default_factory=list)
    qr_module_sizes: list[int] = field(default_factory=list)
    rasters: list[Raster] = field(default_factory=list)
    status_requests: list[int] = field(default_factory=list)
    process_ids: list[str] = field(default_factory=list)  # GS ( H <Function 48>
    cuts: int = 0
    initialised: bool = False

    @property
    def lines(self) -> list[str]:
        return [run.text for run in self.texts]

    @property
    def all_text(self) -> str:
        return "\n".join(self.lines)


def parse(data: bytes) -> Parsed:
    out = Parsed()
    style = Style()
    codec = "cp437"
    pending = bytearray()
    i = 0

    def flush() -> None:
        if pending:
            out.texts.append(
                TextRun(
                    bytes(pending).decode(codec),
                    style.width,
                    style.height,
                    style.bold,
                    style.inverted,
                    style.rotated,
                    style.align,
                )
            )
            pending.clear()

    while i < len(data):
        byte = data[i]
        if byte == 0x0A:  # LF
            flush()
            i += 1
        elif byte == 0x1B:  # ESC
            command = data[i + 1]
            if command == ord("@"):
                out.initialised = True
                style = Style()
                i += 2
            elif command in b"tEa!Vd":
                flush()
                value = data[i + 2]
                if command == ord("t"):
                    codec = CODEPAGES.get(value, "cp437")  # profiles number pages differently
                elif command == ord("E"):
                    style.bold = bool(value)
                elif command == ord("a"):
                    style.align = value % 48
                elif command == ord("!"):
                    style.width = 2 if value & 0x20 else 1
                    style.height = 2 if value & 0x10 else 1
                    style.bold = bool(value & 0x08)
                elif command == ord("V"):
                    style.rotated = bool(value % 48)
                i += 3
            else:
                raise ValueError(f"unknown ESC command 0x{command:02x} at byte {i}")
        elif byte == 0x1D:  # GS
            command = data[i + 1]
            if command == ord("!"):
                flush()
                value = data[i + 2]
                style.width, style.height = (value >> 4) + 1, (value & 0x0F) + 1
                i += 3
            elif command == ord("B"):
                flush()
                style.inverted = bool(data[i + 2])
                i += 3
            elif command == ord("(") and data[i + 2] == ord("k"):
                length = data[i + 3] + 256 * data[i + 4]
                body = data[i + 5 : i + 5 + length]
                if body[:2] == b"1P":  # store QR data
                    out.qr_payloads.append(body[3:].decode("utf-8"))
                elif body[:2] == b"1C":
                    out.qr_module_sizes.append(body[2])
                i += 5 + length
            elif command == ord("(") and data[i + 2] == ord("H"):
                length = data[i + 3] + 256 * data[i + 4]
                body = data[i + 5 : i + 5 + length]
                if body[:2] != b"00" or length != 6:
                    raise ValueError(f"unknown GS ( H function at byte {i}")
                out.process_ids.append(body[2:].decode("ascii"))
                i += 5 + length
            elif command == ord("v") and data[i + 2] == ord("0"):
                flush()
                width_bytes = data[i + 4] + 256 * data[i + 5]
                height = data[i + 6] + 256 * data[i + 7]
                start = i + 8
                raw = data[start : start + width_bytes * height]
                rows = tuple(
                    tuple(
                        bool(raw[r * width_bytes + c // 8] & (0x80 >> (c % 8)))
                        for c in range(width_bytes * 8)
                    )
                    for r in range(height)
                )
                out.rasters.append(Raster(width_bytes * 8, height, rows))
                i = start + width_bytes * height
            elif command == ord("V"):
                flush()
                out.cuts += 1
                i += 4 if data[i + 2] in (65, 66) else 3
            else:
                raise ValueError(f"unknown GS command 0x{command:02x} at byte {i}")
        elif byte == 0x10 and data[i + 1] == 0x04:  # DLE EOT n: status request
            out.status_requests.append(data[i + 2])
            i += 3
        elif byte < 0x20:
            raise ValueError(f"unexpected control byte 0x{byte:02x} at byte {i}")
        else:
            pending.append(byte)
            i += 1
    flush()
    return out


def strip_status_requests(data: bytes) -> bytes:
    """The job without the DLE EOT queries sent around it (before ESC @ and after the end)."""
    start = data.find(b"\x1b@")
    return re.sub(rb"(\x10\x04[\x01\x02\x04])+$", b"", data[start:]) if start >= 0 else b""


def raster_modules(raster: Raster, module: int) -> list[list[bool]]:
    """Read a QR code printed as a raster image back into its modules (trimmed of white
    margins: the printer centres it with ESC a, python-escpos pads it to whole bytes)."""
    dark_cols = [c for c in range(raster.width) if any(row[c] for row in raster.rows)]
    dark_rows = [r for r in range(raster.height) if any(raster.rows[r])]
    left, top = dark_cols[0], dark_rows[0]
    size = (dark_cols[-1] - left + 1) // module
    return [
        [
            raster.rows[top + r * module + module // 2][left + c * module + module // 2]
            for c in range(size)
        ]
        for r in range(size)
    ]
