"""Use case: a complete report from the ILS (import --complete), read against the shelf.

The report lists every hold waiting at a branch. A hold it leaves out was picked up, cancelled
or cleared in the ILS without Holdshelf hearing of it, or the export missed it: one report is
not enough to tell, so the first miss only flags the hold (the desk shows it), and a second
complete report, written after the first miss, that leaves it out too ends it as cancelled,
the way every hold ends. A hold the report lists again loses its flag.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from holdshelf.domain.holds import HoldStatus, ShelfEntry
from holdshelf.storage.models import Hold
from holdshelf.workflow.ending import Ending
from holdshelf.workflow.views import Reconciliation

log = logging.getLogger(__name__)


class Reconciling(Ending):
    """The branch's shelf against the ILS's complete list of the holds waiting there."""

    def reconcile(
        self,
        branch_id: str,
        listed: Collection[str],
        written: dt.datetime,
        *,
        dry_run: bool = False,
    ) -> Reconciliation:
        """Flag the branch's active holds whose items are not ``listed`` (the report's item
        barcodes), end those flagged by an earlier report than this one (``written``: when
        the ILS wrote it), clear the flag of those listed. Holds made ready after the report
        was written, and registered holds whose items were not scanned yet, are not judged by
        it. ``dry_run`` says what would happen and changes nothing."""
        now = self._clock()
        with self._sessions() as session:
            transaction = session.begin()
            outcome = self._reconcile(session, branch_id, set(listed), written, now)
            if dry_run:
                transaction.rollback()
            else:
                transaction.commit()
        if outcome.ended and not dry_run:
            self._fold_erased()
        log.info(
            "complete report for %s: %d flagged, %d ended in the ILS, %d listed again",
            branch_id,
            len(outcome.flagged),
            len(outcome.ended),
            outcome.cleared,
        )
        return outcome

    def _reconcile(
        self,
        session: Session,
        branch_id: str,
        listed: set[str],
        written: dt.datetime,
        now: dt.datetime,
    ) -> Reconciliation:
        flagged: list[ShelfEntry] = []
        ended: list[ShelfEntry] = []
        cleared = 0
        for hold in self._judged(session, branch_id, written):
            if hold.item_barcode in listed:
                cleared += hold.not_in_ils_since is not None
                hold.not_in_ils_since = None
            elif hold.not_in_ils_since is not None and hold.not_in_ils_since < written:
                ended.append(self._end(session, hold, HoldStatus.CANCELLED, now))
            else:  # first missed now, or by an import of a report no newer than this one
                hold.not_in_ils_since = hold.not_in_ils_since or now
                flagged.append(self._entry(hold))
        session.flush()
        return Reconciliation(flagged=flagged, ended=ended, cleared=cleared)

    def _judged(self, session: Session, branch_id: str, written: dt.datetime) -> list[Hold]:
        """The branch's active holds a report written at ``written`` speaks for, in code
        order, locked against a concurrent pickup or cancel."""
        return list(
            session.scalars(
                select(Hold)
                .where(
                    Hold.branch == self.settings.branch(branch_id).id,
                    Hold.status == HoldStatus.READY.value,
                    Hold.on_scan.is_(None),
                    Hold.ready_at <= written,
                )
                .order_by(Hold.mode.desc(), Hold.code)  # as the shelf is cleared
                .with_for_update()
            )
        )
