"""SIP2 frames as bytes: building requests, reading answers, checksums (AY/AZ).

Pure functions, no sockets. Reading keeps only the fields a caller names (``keep``): whatever
else the ACS sends (DA names, BF phones, AE, AJ titles) is dropped here, before anything could
log it. Errors say what was wrong with a frame, never what it contained.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

DELIMITER = "|"
# Fixed-length part of each answer after its two-digit command id (SIP2 2.00).
FIXED_WIDTH = {"94": 1, "96": 0, "98": 34, "10": 22, "18": 24}
_TRAILER = re.compile(rb"(?:AY(\d))?AZ([0-9A-Fa-f]{4})$")


class FrameError(Exception):
    """A frame that is not a readable SIP2 answer. The message describes, never quotes."""


class ChecksumError(FrameError):
    pass


@dataclass(frozen=True)
class Answer:
    command: str
    fixed: str
    fields: dict[str, str] = field(default_factory=dict)
    sequence: int | None = None


def checksum(data: bytes) -> str:
    """The SIP2 checksum: two's complement of the byte sum, 16 bits, four hex digits."""
    return f"{-sum(data) & 0xFFFF:04X}"


def sip_datetime(moment: dt.datetime) -> str:
    """YYYYMMDDZZZZHHMMSS with a blank zone (local time), as Koha's and Evergreen's servers."""
    return moment.strftime("%Y%m%d    %H%M%S")


def field_text(field_id: str, value: str) -> str:
    """One variable field. A value that would end the field or the frame cannot be sent."""
    if DELIMITER in value or "\r" in value or "\n" in value:
        raise ValueError(f"a {field_id} value cannot contain '|' or a line break")
    return f"{field_id}{value}{DELIMITER}"


def request(body: str, sequence: int) -> bytes:
    """A request with error detection: ``body`` + AY<sequence> AZ<checksum> CR."""
    prefix = f"{body}AY{sequence}AZ".encode()
    return prefix + checksum(prefix).encode("ascii") + b"\r"


def resend_request() -> bytes:
    """97 Request ACS Resend: checksummed, no sequence number (SIP2 2.00 p. 4)."""
    return b"97AZ" + checksum(b"97AZ").encode("ascii") + b"\r"


def _strip_trailer(frame: bytes) -> tuple[bytes, int | None]:
    trailer = _TRAILER.search(frame)
    if trailer is None:  # an ACS without error detection: accepted, there is nothing to check
        return frame, None
    if (sum(frame[: trailer.start(2)]) + int(trailer.group(2), 16)) & 0xFFFF:
        raise ChecksumError("the SIP2 answer failed its checksum")
    sequence = trailer.group(1)
    return frame[: trailer.start()], int(sequence) if sequence is not None else None


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:  # SIP2's own default character set
        return data.decode("cp850")


def _fields(text: str, keep: frozenset[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for piece in text.split(DELIMITER):
        field_id, value = piece[:2], piece[2:]
        if field_id not in keep:
            continue  # unwanted (names, contacts, titles) or empty: never kept
        if field_id == "AF" and "AF" in found:
            found["AF"] = f"{found['AF']} {value}"  # AF may repeat: one line for the clerk
        else:
            found.setdefault(field_id, value)
    return found


def read_answer(frame: bytes, keep: frozenset[str]) -> Answer:
    """Parse one answer (without its CR); verify its checksum when it carries one."""
    body, sequence = _strip_trailer(frame)
    text = _text(body)
    command = text[:2]
    width = FIXED_WIDTH.get(command)
    if width is None:
        raise FrameError("the ILS answered with an unknown SIP2 message")
    fixed = text[2 : 2 + width]
    if len(fixed) != width or DELIMITER in fixed:
        raise FrameError("the ILS answered with a truncated SIP2 message")
    return Answer(command, fixed, _fields(text[2 + width :], keep), sequence)


def sip_date(value: str | None) -> dt.date | None:
    """A date from an 18-character SIP2 date (Koha and Evergreen: "YYYYMMDD    HHMMSS") or
    an ISO date (YYYY-MM-DD); None when absent or unreadable (a date never fails a trap)."""
    if not value:
        return None
    match = re.match(r"(\d{4})-?(\d{2})-?(\d{2})", value.strip())
    if match is None:
        return None
    try:
        return dt.date(*(int(part) for part in match.groups()))
    except ValueError:
        return None
