"""Patron pseudonyms: the only form in which Holdshelf keeps a patron's identity.

The card number is normalised and keyed with HMAC-SHA256 under the instance's secret key, so the
same card always gives the same pseudonym (opt-out works across holds) while the card number cannot
be recovered from the database without the key. The card number itself is never stored.

The MAC is truncated to 128 bits (RFC 2104 allows truncation to half the hash): collisions stay
out of reach for any library's patrons, and a signed opt-out link naming the pseudonym fits in
a text message.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from holdshelf.domain.inputs import normalise_card

PSEUDONYM_BYTES = 16
MIN_KEY_BYTES = 16


@dataclass(frozen=True)
class Pseudonymizer:
    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) < MIN_KEY_BYTES:
            raise ValueError(f"the pseudonym key must be at least {MIN_KEY_BYTES} bytes")

    def __call__(self, card_number: str) -> str:
        """The patron's pseudonym: 32 hex characters."""
        message = normalise_card(card_number).encode("utf-8")
        return hmac.digest(self.key, message, hashlib.sha256)[:PSEUDONYM_BYTES].hex()

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        return "Pseudonymizer(key=<hidden>)"
