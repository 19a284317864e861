"""What a connector answers, free of any protocol: the shapes the hold workflow acts on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
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


class HoldState(StrEnum):
    """Where the ILS says a hold Holdshelf has stands (the sync's question)."""

    WAITING = "waiting"  # still on the hold shelf for the same patron
    PICKED_UP = "picked-up"  # the item is checked out
    EXPIRED = "expired"  # the ILS ended the hold because its pickup period ran out
    ENDED = "ended"  # cancelled, back on the shelf, missing, or trapped for another patron
    UNKNOWN = "unknown"  # the ILS does not know the item or does not say: the hold stays


# Whether a card the ILS names is the hold's patron's. The sync compares pseudonyms, so the
# connector never learns whose hold it is asked about, and no card leaves it.
IsPatron = Callable[[str], bool]


class Connector(Protocol):
    """One library's ILS. Thread-safe; keeps its connections (or tokens) between calls."""

    def trapped_hold(self, account: IlsAccount, item_barcode: str) -> TrapAnswer:
        """Whose hold does this item fill? Raises IlsUnavailable when the ILS cannot say."""
        ...

    def hold_state(self, account: IlsAccount, item_barcode: str, is_patron: IsPatron) -> HoldState:
        """Is the hold on this item (for the patron ``is_patron`` recognises) still waiting?
        Reads only: never checks the item in. Raises IlsUnavailable when the ILS cannot say."""
        ...

    def check(self, account: IlsAccount) -> str:
        """Log in and ask the ILS's status; one line saying what works. Raises
        IlsUnavailable with the reason when it does not."""
        ...

    def close(self) -> None:
        """Drop connections; the next call opens them again."""
        ...
