"""Checking the contact a hold may arrive with (an email address or a mobile number)."""

from __future__ import annotations

import re

from holdshelf.errors import InvalidInput

MAX_EMAIL = 254
# Deliberately plain: one @, a dot in the domain, no spaces or control characters.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}$")
_PHONE_SEPARATORS = re.compile(r"[\s().\-/]")


def clean_email(raw: str) -> str:
    value = raw.strip()
    if len(value) > MAX_EMAIL or not _EMAIL.match(value) or not value.isprintable():
        raise InvalidInput("the email address does not look like one (name@example.org)")
    return value


def clean_phone(raw: str) -> str:
    """A mobile number as digits with an optional leading +, 7 to 15 digits (E.164)."""
    value = _PHONE_SEPARATORS.sub("", raw.strip())
    digits = value[1:] if value.startswith("+") else value
    if not digits.isdigit() or not 7 <= len(digits) <= 15:
        raise InvalidInput("the mobile number must have 7 to 15 digits")
    return value
