"""The workflow's base: settings, sessions, clock, and the queries every use case shares."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import secrets
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Engine, Row, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from holdshelf.clock import Clock
from holdshelf.domain.barcodes import BarcodeRules
from holdshelf.domain.codes import ShelfCode, ShelfCodec
from holdshelf.domain.holds import (
    HoldStatus,
    PickupMode,
    ShelfEntry,
)
from holdshelf.domain.inputs import clean_barcode, normalise_card
from holdshelf.domain.pseudonyms import Pseudonymizer
from holdshelf.errors import (
    Conflict,
    InvalidInput,
    InvalidShelfCode,
    NotFound,
)
from holdshelf.settings import BranchSettings, Settings
from holdshelf.storage.database import read_sessions
from holdshelf.storage.models import (
    Hold,
    Notice,
    PatronPreference,
    PrintJob,
    ShelfCodeClaim,
)
from holdshelf.workflow.views import (
    HoldRequest,
)

log = logging.getLogger(__name__)

ENTRY_COLUMNS = (
    Hold.code,
    Hold.branch,
    Hold.pickup_by,
    Hold.mode,
    Hold.move_to_desk,
    Hold.ready_at,
    Hold.on_scan,
    Hold.not_in_ils_since,
)

# Built once: the desk's and the API's every new hold runs them, and building a statement
# cost more than the database's answer to it.
ACTIVE_HOLD_OF_ITEM = select(Hold).where(
    Hold.item_barcode == bindparam("item"), Hold.status == HoldStatus.READY.value
)


def known_patron(patron: BindParameter[str]) -> ColumnElement[bool]:
    """Whether Holdshelf knows the pseudonym ``patron``: an active hold's or a stored choice's."""
    active = select(Hold.id).where(Hold.patron == patron, Hold.status == HoldStatus.READY.value)
    chosen = select(PatronPreference.patron).where(PatronPreference.patron == patron)
    return or_(active.exists(), chosen.exists())


KNOWN_PATRON = select(known_patron(bindparam("patron")))


def _as_card(item: str) -> str | None:
    """The item barcode read as a card number (None if it cannot be one)."""
    try:
        return normalise_card(item)
    except InvalidInput:
        return None


def already_active(hold: Hold, *, another_patron: bool = False) -> Conflict:
    place = "on the hold shelf" if hold.mode == PickupMode.SHELF else "at the desk"
    whose = " for another patron" if another_patron else ""
    return Conflict(
        f"item {hold.item_barcode} is already {place}{whose} at {hold.branch} "
        f"(code {ShelfCode(hold.code).display})"
    )


class HoldsBase:
    """What every use case stands on: the settings, sessions and clock, and the queries that find
    holds (the one place the active-hold predicate and the scan rules are written)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        clock: Clock,
        randbelow: Callable[[int], int] = secrets.randbelow,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._reads = read_sessions(sessions)  # lookups and lists: no write lock on SQLite
        self._clock = clock
        self._randbelow = randbelow  # replaceable only so tests can force code collisions
        self._pseudonym = Pseudonymizer(settings.pseudonym_key.encode("utf-8"))
        self._codecs = {
            branch.id: ShelfCodec(settings.hashids_salt, branch.code_length)
            for branch in settings.branches.values()
        }

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self._sessions

    @property
    def engine(self) -> Engine:
        bind = self._sessions.kw["bind"]
        assert isinstance(bind, Engine)
        return bind

    @property
    def clock(self) -> Clock:
        return self._clock

    def today(self) -> dt.date:
        """The library's date now."""
        return self._clock.today()

    @staticmethod
    def _hold_waits(outbox: type[Notice] | type[PrintJob]) -> Any:
        """An EXISTS for "the row's hold is still active"."""
        return (
            select(Hold.id)
            .where(
                Hold.branch == outbox.branch,
                Hold.code == outbox.code,
                Hold.status == HoldStatus.READY.value,
            )
            .exists()
        )

    @staticmethod
    def _known_patron(session: Session, pseudonym: str) -> bool:
        """Whether Holdshelf knows this patron: an active hold's or a stored choice's."""
        return bool(session.scalar(KNOWN_PATRON, {"patron": pseudonym}))

    @staticmethod
    def _active_hold_of(session: Session, item: str) -> Hold | None:
        return session.scalar(ACTIVE_HOLD_OF_ITEM, {"item": item})

    def _branches(
        self, branch_id: str | None, within: Collection[str] | None = None
    ) -> list[BranchSettings]:
        if branch_id:
            return [self.settings.branch(branch_id)]
        return [b for b in self.settings.branches.values() if not within or b.id in within]

    def _parse(
        self, code: str, branch_id: str | None, within: Collection[str] | None = None
    ) -> dict[str, ShelfCode]:
        """The code as valid at each candidate branch (code lengths differ between branches)."""
        parsed = {}
        for branch in self._branches(branch_id, within):
            try:
                parsed[branch.id] = self._codecs[branch.id].parse(code)
            except InvalidShelfCode:
                continue
        if not parsed:
            raise InvalidShelfCode()
        return parsed

    def _find_by_code(
        self,
        session: Session,
        code: str,
        branch_id: str | None,
        within: Collection[str] | None = None,
    ) -> Hold:
        parsed = self._parse(code, branch_id, within)
        matches = or_(*(and_(Hold.branch == b, Hold.code == c.compact) for b, c in parsed.items()))
        holds = session.scalars(
            select(Hold).where(matches, Hold.status == HoldStatus.READY.value).with_for_update()
        ).all()
        display = next(iter(parsed.values())).display
        if len(holds) > 1:
            branches = ", ".join(sorted(hold.branch for hold in holds))
            raise InvalidInput(f"code {display} is active at {branches}: name the branch")
        if holds:
            return holds[0]
        released = session.scalar(
            select(func.count())
            .select_from(ShelfCodeClaim)
            .where(
                or_(
                    *(
                        and_(ShelfCodeClaim.branch == b, ShelfCodeClaim.code == c.compact)
                        for b, c in parsed.items()
                    )
                ),
                ShelfCodeClaim.released_at.is_not(None),
            )
        )
        if released:
            raise Conflict(f"the hold with code {display} has already ended")
        raise NotFound(f"no active hold has code {display}")

    def _find_scanned(
        self,
        session: Session,
        scan: str,
        branch_id: str | None,
        within: Collection[str] | None = None,
    ) -> Hold:
        """The active hold a desk scan names: a slip's code (or QR), else an item barcode.
        A miss says what the scan was: a hold at another branch, a card, an item without a
        hold, or a code without one."""
        try:
            return self._find_by_code(session, scan, branch_id, within)
        except (InvalidShelfCode, NotFound) as not_a_code:
            item = clean_barcode(scan)
            try:
                return self._find_by_item(session, item, branch_id, within)
            except NotFound:
                pass
            elsewhere = self._active_elsewhere(session, scan, item, branch_id)
            if elsewhere is not None:
                name = self._entry(elsewhere).branch_name
                raise Conflict(
                    f"{ShelfCode(elsewhere.code).display} is a hold at {name} "
                    f"({elsewhere.branch}), not at this branch"
                ) from None
            if not isinstance(not_a_code, InvalidShelfCode):
                raise not_a_code from None
            if self._is_a_card(session, item, branch_id):
                raise InvalidInput("this is a patron's card, not a slip or an item") from None
            rules = self._rules(branch_id)
            if rules.item_pattern and rules.card_pattern and rules.is_item(item):
                raise NotFound(f"no hold on the shelf for item {item}") from None
            # Unless the rules tell items from cards, the scan might be a card: said without
            # repeating it.
            raise NotFound("no hold on the shelf for the item scanned (nor a shelf code)") from None

    def _active_elsewhere(
        self, session: Session, scan: str, item: str, branch_id: str | None
    ) -> Hold | None:
        """The active hold a scan names at a branch other than ``branch_id``."""
        if branch_id is None:
            return None
        here = self.settings.branch(branch_id).id
        others = [b.id for b in self.settings.branches.values() if b.id != here]
        if not others:
            return None
        with contextlib.suppress(InvalidShelfCode, NotFound):
            return self._find_by_code(session, scan, None, others)
        with contextlib.suppress(NotFound):
            return self._find_by_item(session, item, None, others)
        return None

    def _is_a_card(self, session: Session, scan: str, branch_id: str | None) -> bool:
        """Whether a scan is a patron's card: by the card rule, or as a known patron's."""
        if self._rules(branch_id).is_card(scan):
            return True
        card = _as_card(scan)
        return card is not None and self._known_patron(session, self._pseudonym(card))

    def _find_by_item(
        self,
        session: Session,
        item: str,
        branch_id: str | None,
        within: Collection[str] | None = None,
    ) -> Hold:
        query = select(Hold).where(Hold.item_barcode == item, Hold.status == HoldStatus.READY.value)
        if branch_id:
            query = query.where(Hold.branch == self.settings.branch(branch_id).id)
        elif within:
            query = query.where(Hold.branch.in_(within))
        hold = session.scalar(query.with_for_update())
        if hold is None:
            raise NotFound(f"no active hold for item {item}")
        return hold

    def _entry(self, hold: Hold | Row[Any]) -> ShelfEntry:
        return ShelfEntry(
            code=ShelfCode(hold.code),
            branch=hold.branch,
            # a branch removed from the configuration keeps its holds readable
            branch_name=getattr(self.settings.branches.get(hold.branch), "name", hold.branch),
            pickup_by=hold.pickup_by,
            mode=PickupMode(hold.mode),
            move_to_desk=hold.move_to_desk,
            awaiting_scan_since=hold.ready_at if hold.on_scan is not None else None,
            not_in_ils_since=hold.not_in_ils_since,
        )

    def _repeat_of(self, session: Session, request: HoldRequest) -> ShelfEntry | None:
        """One rule for the desk, the CLI, the API and imports: a ready for an item whose hold
        is active for the same patron at the same branch is that hold again, not a new one;
        for another patron or branch it is a conflict (a re-trap the ILS must end first)."""
        return self._repeat(self._active_hold_of(session, request.item), request)

    def _repeat(self, active: Hold | None, request: HoldRequest) -> ShelfEntry | None:
        """``_repeat_of`` with the item's active hold already looked up."""
        if active is None:
            return None
        if active.branch != request.branch.id or active.patron != request.patron:
            raise already_active(active, another_patron=active.patron != request.patron)
        return self._entry(active)

    def _rules(self, branch_id: str | None) -> BarcodeRules:
        """The branch's barcode rules; the library's without a branch."""
        return self.settings.branch(branch_id).barcodes if branch_id else self.settings.barcodes
