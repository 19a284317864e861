"""Checking the contact a hold may arrive with (an email address or a mobile number)."""

from __future__ import annotations

import re

from holdshelf.errors import InvalidInput

MAX_EMAIL = 254
# Deliberately plain (the dot-atom of RFC 5322, which every mail server takes): a local
# part of letters, digits and !#$%&'*+/=?^_`{|}~- separated by single dots, one @, and a
# domain of dot-separated labels. Quoted local parts, commas or angle brackets are refused,
# so an address can never turn into two recipients or fail later in the mail library.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}", re.ASCII)
_PHONE_SEPARATORS = re.compile(r"[\s().\-/]")
_PHONE = re.compile(r"\+?[0-9]{7,15}", re.ASCII)


def clean_email(raw: str) -> str:
    value = raw.strip()
    local = value.partition("@")[0]
    if len(value) > MAX_EMAIL or len(local) > 64 or not _EMAIL.fullmatch(value):
        raise InvalidInput("the email address does not look like one (name@example.org)")
    return value


def clean_phone(raw: str) -> str:
    """A mobile number as digits with an optional leading +, 7 to 15 digits (E.164)."""
    value = _PHONE_SEPARATORS.sub("", raw.strip())
    if not _PHONE.fullmatch(value):  # ASCII digits only: a gateway takes no others
        raise InvalidInput("the mobile number must have 7 to 15 digits")
    return value
