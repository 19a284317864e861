"""Patrons and titles the peers serve: full names, contacts and addresses as an ILS has them,
so that a test can tell whether any of it leaked into a log or an error."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Person:
    card: str
    first: str
    last: str
    email: str
    phone: str
    street: str

    @property
    def secrets(self) -> list[str]:
        return [self.card, self.first, self.last, self.email, self.phone, self.street]


ADA = Person(
    "23000000000017", "Augusta", "Lovelace", "ada@example.org", "555-0101", "12 Engine Row"
)
GRACE = Person("23000000000025", "Grace", "Hopper", "grace@example.net", "555-0202", "7 Cobol Lane")
ALAN = Person("23000000000033", "Alan", "Turing", "alan@example.com", "555-0303", "3 Enigma Court")
REDACTED = Person("23000000000041", "Hedy", "Lamarr", "hedy@example.org", "555-0404", "9 Radio St")
PEOPLE = [ADA, GRACE, ALAN, REDACTED]

TITLES = ["The Secret Garden", "A Room of One's Own", "The Left Hand of Darkness"]
NOTES = [f"Please phone {ADA.phone} before Friday", f"Ask for {GRACE.first} at the desk"]

SECRETS = [s for person in PEOPLE for s in person.secrets] + TITLES + NOTES


def leaked(text: str) -> list[str]:
    """The patron data and titles found in ``text``."""
    return [secret for secret in SECRETS if secret in text]
