"""Compact signed links for patrons: "keep my holds behind the desk".

A token names the patron's pseudonym (never the card number) and a last valid day, signed
with HMAC-SHA256 under the instance's secret key. It is compact on purpose (40 characters),
so that a notice by SMS, link included, stays under 160 characters.

Layout, base64url without padding: pseudonym (16 bytes) | last day (2 bytes, days since
2000-01-01) | tag (12 bytes, truncated HMAC).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac

from holdshelf.domain.pseudonyms import PSEUDONYM_BYTES
from holdshelf.errors import HoldshelfError

EPOCH = dt.date(2000, 1, 1)
TAG_BYTES = 12
_PURPOSE = b"holdshelf opt-out link v1"


class LinkInvalid(HoldshelfError):
    def __init__(self) -> None:
        super().__init__("this link is not valid")


class LinkExpired(HoldshelfError):
    def __init__(self) -> None:
        super().__init__("this link has expired")


def _tag(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, _PURPOSE + body, hashlib.sha256).digest()[:TAG_BYTES]


def make_token(pseudonym: str, key: bytes, valid_until: dt.date) -> str:
    raw = bytes.fromhex(pseudonym)
    if len(raw) != PSEUDONYM_BYTES:
        raise ValueError("a pseudonym is 16 bytes")
    body = raw + (valid_until - EPOCH).days.to_bytes(2, "big")
    return base64.urlsafe_b64encode(body + _tag(key, body)).decode("ascii").rstrip("=")


def read_token(token: str, key: bytes, today: dt.date) -> str:
    """The pseudonym a token names; LinkInvalid if it was altered, LinkExpired if too old."""
    try:
        data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise LinkInvalid() from None
    if len(data) != PSEUDONYM_BYTES + 2 + TAG_BYTES:
        raise LinkInvalid()
    body, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(key, body)):
        raise LinkInvalid()
    last_day = EPOCH + dt.timedelta(days=int.from_bytes(body[-2:], "big"))
    if today > last_day:
        raise LinkExpired()
    return body[:PSEUDONYM_BYTES].hex()
