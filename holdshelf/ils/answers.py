"""What a connector answers, free of any protocol: the shapes the hold workflow acts on."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from holdshelf.errors import HoldshelfError


class IlsUnavailable(HoldshelfError):
    """The ILS could not be asked (down, slow, refused the login, answered nonsense).

    The message is one line for the clerk or the log; it never quotes what the ILS sent."""


@dataclass(frozen=True)
class IlsAccount:
    """One branch's way into the ILS: its login (SIP2) and the ILS's code for the branch."""

    branch_id: str
    location: str
    login: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class Trapped:
    """The ILS trapped a hold on the item for the patron with this card, to be picked up at
    ``location`` (the ILS's code; the workflow maps it to a branch)."""

    card: str
    location: str
    pickup_by: dt.date | None = None
    message: str | None = None  # the ILS's own words for the clerk (SIP2 AF), if any


@dataclass(frozen=True)
class InTransit:
    """The item fills a hold to be picked up elsewhere: send it to ``destination``."""

    destination: str
    message: str | None = None


@dataclass(frozen=True)
class NoHold:
    """The item fills no hold: it goes back to the shelf."""

    message: str | None = None


TrapAnswer = Trapped | InTransit | NoHold


class Connector(Protocol):
    """One library's ILS. Thread-safe; keeps its connections (or tokens) between calls."""

    def trapped_hold(self, account: IlsAccount, item_barcode: str) -> TrapAnswer:
        """Whose hold does this item fill? Raises IlsUnavailable when the ILS cannot say."""
        ...

    def check(self, account: IlsAccount) -> str:
        """Log in and ask the ILS's status; one line saying what works. Raises
        IlsUnavailable with the reason when it does not."""
        ...

    def close(self) -> None:
        """Drop connections; the next call opens them again."""
        ...
