"""Use case: a patron's pickup choice (opt out of the open shelf, and back)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from holdshelf.domain.codes import ShelfCode
from holdshelf.domain.holds import (
    HoldStatus,
    PickupMode,
    ShelfEntry,
    stored_preference,
)
from holdshelf.domain.inputs import checked
from holdshelf.errors import (
    Conflict,
)
from holdshelf.storage import database
from holdshelf.storage.counters import bump
from holdshelf.storage.models import (
    Hold,
    PatronPreference,
)
from holdshelf.workflow.slips import Slips
from holdshelf.workflow.views import (
    PatronView,
)

log = logging.getLogger(__name__)

MOVED_TO_DESK = "moved_to_desk"  # the counter of holds staff moved to the desk


class Patrons(Slips):
    """A patron's standing pickup choice, and moving their holds to the desk."""

    def pseudonym(self, card: str, branch_id: str | None = None) -> str:
        """The patron's pseudonym: how the web desk remembers a patron without the card. The
        card must pass the branch's card rule (the library's, without a branch)."""
        return self._pseudonym(checked("patron_card", self._rules(branch_id).card, card))

    def patron(self, card: str) -> PatronView:
        return self.patron_view(self.pseudonym(card))

    def patron_view(self, pseudonym: str) -> PatronView:
        with self._reads() as session:
            return self._patron_view(session, pseudonym)

    def opt_out(self, card: str) -> PatronView:
        """Future holds go to the desk; holds already on the open shelf are listed for staff."""
        return self.choose(self.pseudonym(card), PickupMode.DESK)

    def opt_in(self, card: str) -> PatronView:
        """Back to the library's default; nothing of theirs needs moving any more."""
        return self.choose(self.pseudonym(card), PickupMode.SHELF)

    def choose(self, pseudonym: str, choice: PickupMode) -> PatronView:
        """Record a patron's pickup choice; takes effect at once, needs no reason."""
        keep = stored_preference(choice, self.settings.default_pickup)
        with self._sessions.begin() as session:
            if keep is None:
                session.execute(
                    delete(PatronPreference).where(PatronPreference.patron == pseudonym)
                )
            else:
                session.execute(self._upsert_preference(session, pseudonym, keep))
            session.execute(
                update(Hold)
                .where(
                    Hold.patron == pseudonym,
                    Hold.status == HoldStatus.READY.value,
                    Hold.mode == PickupMode.SHELF.value,
                )
                .values(move_to_desk=choice is PickupMode.DESK)
            )
            view = self._patron_view(session, pseudonym)
        log.info("patron preference set to %s", choice.value)
        return view

    @staticmethod
    def _upsert_preference(session: Session, pseudonym: str, mode: PickupMode) -> Any:
        statement = database.dialect_insert(session, PatronPreference).values(
            patron=pseudonym, mode=mode.value
        )
        return statement.on_conflict_do_update(index_elements=["patron"], set_={"mode": mode.value})

    def _patron_view(self, session: Session, pseudonym: str) -> PatronView:
        stored = session.get(PatronPreference, pseudonym)
        holds = session.scalars(
            select(Hold)
            .where(Hold.patron == pseudonym, Hold.status == HoldStatus.READY.value)
            .order_by(Hold.branch, Hold.code)
        ).all()
        preference = PickupMode(stored.mode) if stored else self.settings.default_pickup
        return PatronView(preference, stored is not None, [self._entry(h) for h in holds])

    def moved_to_desk(self, code: str, branch_id: str | None = None) -> ShelfEntry:
        """Staff took the item off the open shelf: from now on it is a desk hold."""
        now = self._clock()
        with self._sessions.begin() as session:
            hold = self._find_by_code(session, code, branch_id)
            if hold.mode == PickupMode.DESK:
                raise Conflict(f"the hold {ShelfCode(hold.code).display} is already at the desk")
            hold.mode, hold.move_to_desk = PickupMode.DESK.value, False
            bump(session, now.date(), hold.branch, MOVED_TO_DESK, PickupMode.DESK.value)
            entry = self._requeue_slip(session, hold, now)  # its slip gets the desk band
        log.info("hold %s moved to the desk", hold.id)
        return entry
