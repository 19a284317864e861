"""Use case: ending holds (pickup, cancel, expiry), one rule for what ending does."""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.orm import Session

from holdshelf.domain.codes import ShelfCode
from holdshelf.domain.holds import (
    HoldStatus,
    ShelfEntry,
    desk_day,
    end_transition,
)
from holdshelf.domain.inputs import clean_barcode
from holdshelf.errors import (
    Conflict,
    InvalidInput,
)
from holdshelf.storage import database
from holdshelf.storage.counters import bump
from holdshelf.storage.models import (
    Delivery,
    Hold,
    Notice,
    ShelfCodeClaim,
)
from holdshelf.workflow.base import (
    ENTRY_COLUMNS,
    HoldsBase,
)
from holdshelf.workflow.views import ActiveHold

log = logging.getLogger(__name__)

ENDED_PER_TRANSACTION = 20  # holds the ILS sync ends per transaction (~2-10 ms each)
EXPIRED_PER_STATEMENT = 5000  # holds per set-based statement of expire (bound parameters)
ERASE_CHECKPOINT_WAIT_MS = 250  # a desk request's longest wait for readers, folding an erasure
# expire's statements touch no loaded object: nothing in the session to synchronise
UNSYNCED = {"synchronize_session": False}


class Ending(HoldsBase):
    """Ending holds: pickup, cancel, expiry; every path ends a hold through ``_end``."""

    def pickup(
        self,
        code: str | None = None,
        *,
        item: str | None = None,
        scan: str | None = None,
        branch_id: str | None = None,
        within: Collection[str] | None = None,
    ) -> ShelfEntry:
        """Record that the patron collected the item, found by its code, its barcode, or
        whichever of the two a desk ``scan`` is (at ``branch_id``, or at any branch ``within``
        the given ones)."""
        return self._end_one(HoldStatus.PICKED_UP, code, item, branch_id, within, scan)

    def cancel(
        self,
        code: str | None = None,
        *,
        item: str | None = None,
        branch_id: str | None = None,
        within: Collection[str] | None = None,
    ) -> ShelfEntry:
        return self._end_one(HoldStatus.CANCELLED, code, item, branch_id, within)

    def expire(self, on: dt.date | None = None) -> list[ShelfEntry]:
        """End every hold whose pickup-by date is before ``on`` (default today: the patron has
        all of the pickup-by day); returns what to pull, in shelving order."""
        now = self._clock()
        on = on or now.date()
        if on > now.date():  # the patron has all of the pickup-by day, to the last minute
            raise InvalidInput("holds cannot be expired ahead of time (the date is in the future)")
        with self._sessions.begin() as session:
            pulled = self._expire_all(session, on, now)
        if pulled:
            self._fold_erased()
        log.info("expired %d holds", len(pulled))
        return pulled

    def expire_hold(self, scan: str, branch_id: str) -> ShelfEntry:
        """Staff pulled this overdue item from the shelf (scanned its slip or its barcode):
        the hold ends as expired."""
        now = self._clock()
        with self._sessions.begin() as session:
            hold = self._find_scanned(session, scan, branch_id)
            if hold.pickup_by >= now.date():
                raise Conflict(
                    f"{ShelfCode(hold.code).display} can still be picked up until "
                    f"{desk_day(hold.pickup_by, now.date())}: leave it on the shelf"
                )
            entry = self._end(session, hold, HoldStatus.EXPIRED, now)
        self._fold_erased()
        log.info("hold %s expired (pulled)", hold.id)
        return entry

    def _end_one(
        self,
        outcome: HoldStatus,
        code: str | None,
        item: str | None,
        branch_id: str | None,
        within: Collection[str] | None = None,
        scan: str | None = None,
    ) -> ShelfEntry:
        if [code, item, scan].count(None) != 2:
            raise InvalidInput("give either a shelf code or an item barcode")
        now = self._clock()
        with self._sessions.begin() as session:
            if scan is not None:
                hold = self._find_scanned(session, scan, branch_id, within)
            elif code is not None:
                hold = self._find_by_code(session, code, branch_id, within)
            else:
                hold = self._find_by_item(session, clean_barcode(item), branch_id, within)
            entry = self._end(session, hold, outcome, now)
        self._fold_erased()
        log.info("hold %s %s", hold.id, outcome.label)
        return entry

    def active_holds(
        self, branch_id: str, made_before: dt.datetime | None = None
    ) -> list[ActiveHold]:
        """The branch's active holds as the ILS sync asks about them, oldest first. Holds
        registered ahead of their items are left out: the ILS may still show such an item in
        transit, which would read as an ended hold."""
        query = select(Hold.id, Hold.item_barcode, Hold.patron, Hold.pickup_by).where(
            Hold.branch == self.settings.branch(branch_id).id,
            Hold.status == HoldStatus.READY.value,
            Hold.on_scan.is_(None),
        )
        if made_before is not None:
            query = query.where(Hold.ready_at < made_before)
        with self._reads() as session:
            rows = session.execute(query.order_by(Hold.id)).all()
        return [ActiveHold(r.id, r.item_barcode, r.patron or "", r.pickup_by) for r in rows]

    def is_patron(self, hold: ActiveHold) -> Callable[[str], bool]:
        """Whether a card the ILS names is this hold's patron's, by pseudonym."""
        return lambda card: hmac.compare_digest(self._pseudonym(card), hold.patron)

    def end_in_ils(self, ended: Sequence[tuple[ActiveHold, HoldStatus]]) -> list[HoldStatus]:
        """End holds the ILS says ended, in one transaction; how each that ended did. A hold
        that changed meanwhile (ended here, or made again for another patron) is left."""
        now = self._clock()
        entries = []
        # Short transactions: on SQLite each holds the one write lock, and a desk check-in
        # waits for it (a first sync after an outage may end thousands).
        for start in range(0, len(ended), ENDED_PER_TRANSACTION):
            with self._sessions.begin() as session:
                for hold_view, outcome in ended[start : start + ENDED_PER_TRANSACTION]:
                    hold = session.get(Hold, hold_view.id, with_for_update=True)
                    if hold is None or hold.status != HoldStatus.READY.value:
                        continue
                    if hold.patron != hold_view.patron:
                        continue
                    self._end(session, hold, outcome, now)
                    entries.append(outcome)
        if entries:
            self._fold_erased()
        log.info("%d holds ended in the ILS", len(entries))
        return entries

    def _expire_all(self, session: Session, on: dt.date, now: dt.datetime) -> list[ShelfEntry]:
        """What ``_end`` does to one hold, done to every overdue hold at once: a few set-based
        statements over the overdue set, the counters summed per branch and mode (one upsert
        each), so the cost per hold stays flat (no ORM objects, no flush per hold)."""
        rows = session.execute(  # locks the set (PostgreSQL); SQLite holds the write lock
            select(Hold.id, *ENTRY_COLUMNS)
            .where(Hold.status == HoldStatus.READY.value, Hold.pickup_by < on)
            .order_by(Hold.branch, Hold.code)
            .with_for_update()
        ).all()
        # as _end returns it: ended, a registered hold's sealed contacts gone with it
        pulled = [replace(self._entry(row), awaiting_scan_since=None) for row in rows]
        ids = sorted(row.id for row in rows)
        # By id, not by the overdue condition again: exactly the locked set, in chunks that
        # stay within every driver's limit on bound parameters.
        for start in range(0, len(ids), EXPIRED_PER_STATEMENT):
            chunk = Hold.id.in_(ids[start : start + EXPIRED_PER_STATEMENT])
            codes = select(Hold.branch, Hold.code).where(chunk)
            session.execute(
                update(ShelfCodeClaim)
                .where(tuple_(ShelfCodeClaim.branch, ShelfCodeClaim.code).in_(codes))
                .values(released_at=now),
                execution_options=UNSYNCED,
            )
            session.execute(  # notices not yet sent will not be: their contacts are erased now
                update(Notice)
                .where(
                    Notice.status == Delivery.QUEUED, tuple_(Notice.branch, Notice.code).in_(codes)
                )
                .values(
                    status=Delivery.DROPPED,
                    sealed=None,
                    finished_at=now,
                    last_error="the hold ended before it was sent",
                ),
                execution_options=UNSYNCED,
            )
            if self.settings.retention_days == 0:  # the links to the patrons go with the rows
                session.execute(delete(Hold).where(chunk), execution_options=UNSYNCED)
            else:
                session.execute(
                    update(Hold)
                    .where(chunk)
                    .values(status=HoldStatus.EXPIRED.value, ended_at=now, on_scan=None),
                    execution_options=UNSYNCED,
                )
        for (branch, mode), count in sorted(Counter((r.branch, r.mode) for r in rows).items()):
            bump(session, now.date(), branch, HoldStatus.EXPIRED.value, mode, by=count)
        return pulled

    def _fold_erased(self) -> None:
        """After a transaction that erased a link or a contact: fold SQLite's WAL now, so the
        old page images go at once, not at the next hourly purge. A desk request waits for
        readers only briefly; what they hold back, the worker's next pass folds."""
        if not database.checkpoint(self.engine, wait_ms=ERASE_CHECKPOINT_WAIT_MS):
            log.info("checkpoint after an erasure deferred: readers busy")

    def _end(
        self, session: Session, hold: Hold, outcome: HoldStatus, now: dt.datetime
    ) -> ShelfEntry:
        hold.status = end_transition(HoldStatus(hold.status), outcome).value
        hold.ended_at = now
        hold.on_scan = None  # a registered hold's sealed contacts go with it
        entry = self._entry(hold)
        session.execute(
            update(ShelfCodeClaim)
            .where(ShelfCodeClaim.branch == hold.branch, ShelfCodeClaim.code == hold.code)
            .values(released_at=now)
        )
        bump(session, now.date(), hold.branch, outcome.value, hold.mode)
        session.execute(  # a notice not yet sent will not be: its contact is erased now
            update(Notice)
            .where(
                Notice.branch == hold.branch,
                Notice.code == hold.code,
                Notice.status == Delivery.QUEUED,
            )
            .values(
                status=Delivery.DROPPED,
                sealed=None,
                finished_at=now,
                last_error="the hold ended before it was sent",
            )
        )
        if self.settings.retention_days == 0:
            session.delete(hold)  # the link to the patron goes with the row, at once
        session.flush()
        return entry
