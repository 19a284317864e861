"""Use case: a hold's slip."""

from __future__ import annotations

import datetime as dt
import json
import logging

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from holdshelf.domain.codes import ShelfCode
from holdshelf.domain.holds import (
    HoldStatus,
    ShelfEntry,
)
from holdshelf.domain.slips import Slip
from holdshelf.storage import wakeup
from holdshelf.storage.models import (
    Delivery,
    Hold,
    PrintJob,
    Priority,
)
from holdshelf.workflow.base import (
    HoldsBase,
)
from holdshelf.workflow.views import (
    SlipState,
    SlipStatus,
)

log = logging.getLogger(__name__)

# Built once: every new hold runs it (see base.ACTIVE_HOLD_OF_ITEM).
INSERT_PRINT_JOB = insert(PrintJob.__table__)


class Slips(HoldsBase):
    """A hold's slip: queued with the hold, reprinted, rebuilt when the hold changes; its state."""

    def _queue_slip(
        self,
        session: Session,
        entry: ShelfEntry,
        kind: str,
        now: dt.datetime,
        *,
        item: str | None,
        title: str | None = None,
        priority: Priority = Priority.DESK,
    ) -> None:
        slip = self._slip_for(entry, item, title)
        session.flush()  # the caller's changes first (an older slip of the hold dropped)
        session.connection().execute(
            INSERT_PRINT_JOB,
            {
                "branch": entry.branch,
                "code": entry.code.compact,
                "kind": kind,
                "payload": json.dumps(slip.payload()),
                "status": Delivery.QUEUED.value,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
                "priority": priority.value,
            },
        )
        wakeup.mark_queued(session)  # a Core insert passes no flush: say so, to wake workers

    def slip(self, code: str, branch_id: str | None = None) -> tuple[str, Slip]:
        """The branch and slip of an active hold, as its newest slip was queued."""
        with self._reads() as session:
            hold = self._find_by_code(session, code, branch_id)
            newest = self._newest_slip(session, hold)
            if newest is not None:
                return hold.branch, newest
            return hold.branch, self._slip_for(self._entry(hold), hold.item_barcode, None)

    def reprint(
        self, code: str | None = None, branch_id: str | None = None, *, scan: str | None = None
    ) -> ShelfEntry:
        """Queue the slip of an active hold again, found by its code or by a desk ``scan`` (the
        slip's code or the item). No notice goes to the patron."""
        now = self._clock()
        with self._sessions.begin() as session:
            if scan is not None:
                hold = self._find_scanned(session, scan, branch_id)
            else:
                hold = self._find_by_code(session, code or "", branch_id)
            entry = self._requeue_slip(session, hold, now)
        log.info("hold %s slip queued again", hold.id)
        return entry

    def _requeue_slip(self, session: Session, hold: Hold, now: dt.datetime) -> ShelfEntry:
        """A new slip for ``hold`` as it is now (moved to the desk, a new date), with the title
        the hold arrived with while its print job is kept: a title is stored nowhere else."""
        entry = self._entry(hold)
        newest = self._newest_slip(session, hold)
        title = newest.title if newest is not None else None
        self._queue_slip(session, entry, "reprint", now, item=hold.item_barcode, title=title)
        return entry

    def change_pickup_by(self, code: str, pickup_by: dt.date, branch_id: str) -> ShelfEntry:
        """Give a hold a new pickup-by date (a patron asked for longer); its slip is reprinted
        with the date. No notice goes to the patron."""
        now = self._clock()
        with self._sessions.begin() as session:
            hold = self._find_by_code(session, code, branch_id)
            policy = self.settings.branch(hold.branch).policy
            hold.pickup_by = policy.check_requested(pickup_by, now.date())
            entry = self._requeue_slip(session, hold, now)
        log.info("hold %s pickup-by date changed", hold.id)
        return entry

    def _slip_for(self, entry: ShelfEntry, item: str | None, title: str | None) -> Slip:
        """The slip of a hold, with what the library's slip options let on it."""
        return Slip.for_hold(
            entry,
            self.settings.slip_options,
            item_barcode=item,
            title=title,
            language=self.settings.language_of(entry.branch),
        )

    @staticmethod
    def _newest_slip(session: Session, hold: Hold) -> Slip | None:
        payload = session.scalar(
            select(PrintJob.payload)
            .where(PrintJob.branch == hold.branch, PrintJob.code == hold.code)
            .order_by(PrintJob.id.desc())
            .limit(1)
        )
        return None if payload is None else Slip.from_payload(json.loads(payload))

    @staticmethod
    def _awaits_scan(session: Session, code: ShelfCode, branch_id: str) -> bool:
        return (
            session.scalar(
                select(Hold.id).where(
                    Hold.branch == branch_id,
                    Hold.code == code.compact,
                    Hold.status == HoldStatus.READY.value,
                    Hold.on_scan.is_not(None),
                )
            )
            is not None
        )

    def print_status(self, code: ShelfCode, branch_id: str) -> SlipStatus:
        """How the newest slip of a hold is doing."""
        with self._reads() as session:
            job = session.scalar(
                select(PrintJob)
                .where(PrintJob.branch == branch_id, PrintJob.code == code.compact)
                .order_by(PrintJob.id.desc())
                .limit(1)
            )
            awaits_scan = job is None and self._awaits_scan(session, code, branch_id)
        if awaits_scan:
            return SlipStatus(SlipState.AWAITING_SCAN)
        if job is None:
            return SlipStatus(SlipState.NONE)
        if job.status == Delivery.SENT:
            return SlipStatus(SlipState.PRINTED, job.attempts)
        if job.status == Delivery.DROPPED:
            return SlipStatus(SlipState.DROPPED, job.attempts)
        if job.last_error:
            return SlipStatus(SlipState.RETRYING, job.attempts, job.last_error)
        return SlipStatus(SlipState.QUEUED, job.attempts)
