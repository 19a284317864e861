"""Use case: one scan at check-in. The ILS says whose hold the item fills; Holdshelf makes it
ready, or says where the item goes instead.

Only the card leaves the connector's answer, and it becomes a pseudonym in ``ready``; the ILS's
own words for the clerk (a SIP2 screen message) are shown, never stored or logged.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from holdshelf.domain.holds import ShelfEntry
from holdshelf.domain.inputs import checked
from holdshelf.errors import InvalidInput
from holdshelf.ils.answers import Connector, IlsAccount, InTransit, NoHold
from holdshelf.service import HoldService
from holdshelf.settings import BranchSettings, Settings
from holdshelf.workflow.making_ready import CARD_IN_THE_WRONG_FIELD


@dataclass(frozen=True)
class Shelved:
    """The hold is ready here: its slip is queued."""

    entry: ShelfEntry
    message: str | None = None
    repeated: bool = False  # scanned again: the hold it already is (no new slip or notice)


@dataclass(frozen=True)
class SendElsewhere:
    """The item fills a hold picked up at another library: no code, send it there."""

    destination: str  # the branch's name, or the ILS's code for a library Holdshelf lacks
    message: str | None = None


@dataclass(frozen=True)
class NothingTrapped:
    """The item fills no hold: back to the shelf."""

    message: str | None = None


CheckInResult = Shelved | SendElsewhere | NothingTrapped


class CheckIn:
    """Check-in by the item alone, through the library's ILS connector."""

    def __init__(self, settings: Settings, service: HoldService, connector: Connector) -> None:
        self.settings = settings
        self._service = service
        self._connector = connector

    def scan(
        self,
        branch_id: str,
        item: str,
        *,
        email: str | None = None,
        sms: str | None = None,
    ) -> CheckInResult:
        """Ask the ILS about ``item`` scanned at ``branch_id``. Raises IlsUnavailable when it
        cannot say (the desk then asks for the card), InvalidInput for a bad barcode."""
        branch = self.settings.branch(branch_id)
        item = checked("item_barcode", branch.barcodes.item, item)
        if self._service.is_a_card(item, branch.id):  # never ask the ILS about a card
            raise InvalidInput(CARD_IN_THE_WRONG_FIELD["item_barcode"], field="item_barcode")
        known = scan_registered(self._service, branch.id, item, email=email, sms=sms)
        if known is not None:  # the ILS told Holdshelf already: no need to ask it again
            return known
        answer = self._connector.trapped_hold(account_of(branch), item)
        if isinstance(answer, NoHold):
            return NothingTrapped(answer.message)
        if isinstance(answer, InTransit):
            return SendElsewhere(self._library_named(answer.destination), answer.message)
        here = self._branch_at(answer.location)
        if here.id != branch.id:
            return SendElsewhere(here.name, answer.message)
        request = self._service.hold_request(
            branch.id,
            item,
            answer.card,
            _usable(answer.pickup_by, self._service.today()),
            email=email,
            sms=sms,
        )
        entry, made = self._service.ready_once(request)
        return Shelved(entry, answer.message, repeated=not made)

    def check(self, branch_id: str) -> str:
        return self._connector.check(account_of(self.settings.branch(branch_id)))

    def _branch_at(self, location: str) -> BranchSettings:
        """The branch whose ils_location the ILS named; an unknown one is said, not guessed."""
        found = branch_at(self.settings, location)
        if found is None:
            raise InvalidInput(
                f"the ILS names pickup location {location!r}, which is no branch's "
                "ils_location: add it to the configuration or check the ILS's hold"
            )
        return found

    def _library_named(self, location: str) -> str:
        found = branch_at(self.settings, location)
        return found.name if found else location


def scan_registered(
    service: HoldService,
    branch_id: str,
    item: str,
    *,
    email: str | None = None,
    sms: str | None = None,
) -> Shelved | SendElsewhere | None:
    """The scan of an item whose hold an ILS registered ahead of it (API "print": "on-scan"),
    with or without an ILS connection: ready here with its slip queued, or bound for the branch
    that registered it; None when Holdshelf awaits no scan of this item."""
    entry = service.print_registered(branch_id, item, email=email, sms=sms)
    if entry is None:
        return None
    if entry.branch != branch_id:
        return SendElsewhere(entry.branch_name)
    return Shelved(entry)


def account_of(branch: BranchSettings) -> IlsAccount:
    return IlsAccount(branch.id, branch.ils_location, branch.ils_login, branch.ils_password)


def branch_at(settings: Settings, location: str) -> BranchSettings | None:
    wanted = location.strip().upper()
    return next((b for b in settings.branches.values() if b.ils_location.upper() == wanted), None)


def _usable(pickup_by: dt.date | None, today: dt.date) -> dt.date | None:
    """The ILS's pickup-by date unless it has passed (then the branch's rule decides)."""
    return pickup_by if pickup_by is not None and pickup_by >= today else None
