"""Validation of what a scanner or a clerk types: barcodes, card numbers and dates."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable
from typing import TypeVar

from holdshelf.errors import InvalidInput

MAX_BARCODE_LENGTH = 64
ASCII_WHITESPACE = " \t\r\n\x0b\x0c"
T = TypeVar("T")
# Scanners and keyboards put spaces or hyphens inside card numbers; the ILS does not.
_CARD_SEPARATORS = re.compile(r"[\s\-]+")


def checked(field: str, check: Callable[[str], T], value: str) -> T:
    """``check(value)``; an InvalidInput it raises names ``field``, the input's name in forms,
    reports and the API (item_barcode, patron_card, pickup_by, email, sms)."""
    try:
        return check(value)
    except InvalidInput as exc:
        exc.field = exc.field or field
        raise


# A scanner sends letters, digits, punctuation and plain spaces. Anything else in a barcode is
# a paste or a keyboard slip that would make one card two patrons: control and format
# characters (C*), combining marks (M*), line and paragraph separators and every space but the
# plain one (Z*: NBSP too, which NFKC would quietly turn into a space), emoji and other symbols.
_REFUSED_CATEGORIES = ("C", "M", "Z", "So")
_PLAIN_SPACES = {" ", "\u3000"}  # the ideographic space of a fullwidth keyboard: NFKC's " "


def _has_control_characters(text: str) -> bool:
    if text.isascii() and text.isprintable():  # what scanners send: no lookup per character
        return False
    return any(
        ch not in _PLAIN_SPACES and unicodedata.category(ch).startswith(_REFUSED_CATEGORIES)
        for ch in text
    )


def clean_barcode(raw: str | None, what: str = "item barcode") -> str:
    """A barcode in Unicode NFKC (a fullwidth "２１０" is the same card as "210") stripped of
    surrounding whitespace; empty, oversized or control-character barcodes are refused. The
    message never repeats the value (it might be a card number)."""
    raw = (raw or "").strip(ASCII_WHITESPACE)  # a scanner's Enter or Tab; NBSP is refused
    if len(raw) > MAX_BARCODE_LENGTH * 4:  # not worth normalising
        raise InvalidInput(f"the {what} is longer than {MAX_BARCODE_LENGTH} characters")
    if raw.isascii() and raw.isprintable():  # what scanners send: NFKC leaves it as it is
        return _checked_length(raw, what)
    if _has_control_characters(raw):
        raise InvalidInput(f"the {what} contains characters no barcode has")
    value = unicodedata.normalize("NFKC", raw).strip(ASCII_WHITESPACE)
    if _has_control_characters(value):
        raise InvalidInput(f"the {what} contains characters no barcode has")
    return _checked_length(value, what)


def _checked_length(value: str, what: str) -> str:
    if not value:
        raise InvalidInput(f"the {what} is empty")
    if len(value) > MAX_BARCODE_LENGTH:
        raise InvalidInput(f"the {what} is longer than {MAX_BARCODE_LENGTH} characters")
    return value


def normalise_card(raw: str | None) -> str:
    """The canonical form of a library card number: upper-case, no spaces or hyphens."""
    card = _CARD_SEPARATORS.sub("", clean_barcode(raw, "card number")).upper()
    if not card:  # only separators: every such "card" would share one pseudonym
        raise InvalidInput("the card number has no digits or letters")
    return card


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def parse_date(raw: str, what: str = "date") -> dt.date:
    value = raw.strip()
    try:  # fromisoformat alone also takes week dates (2026-W49-1) and 20261201
        if not _ISO_DATE.fullmatch(value):
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"the {what} must be a date as YYYY-MM-DD") from None
