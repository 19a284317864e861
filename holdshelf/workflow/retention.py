"""Use case: retention and the counts kept."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import delete, func, select

from holdshelf.domain.codes import ALPHABET, CHECK_MODULUS
from holdshelf.domain.holds import (
    HoldStatus,
    reuse_cutoff,
    unlink_cutoff,
)
from holdshelf.storage import database
from holdshelf.storage.models import (
    DailyCount,
    Delivery,
    Hold,
    Notice,
    PrintJob,
    ShelfCodeClaim,
)
from holdshelf.workflow.base import (
    HoldsBase,
)
from holdshelf.workflow.views import (
    BranchUsage,
    DayCounts,
    PurgeReport,
    _group_days,
)

log = logging.getLogger(__name__)

# Printed slips stay listed this long; sent or failed notices too, or while their hold waits.
FINISHED_KEPT = dt.timedelta(days=1)


class Retention(HoldsBase):
    """Retention (the purge) and the numbers kept."""

    def purge(self) -> PurgeReport:
        """Delete ended holds' links once their retention is over and free codes that have
        rested 30 days; then fold SQLite's WAL so no old page image keeps a deleted link."""
        now = self._clock()
        with self._sessions.begin() as session:
            unlinked = session.execute(
                delete(Hold).where(
                    Hold.status != HoldStatus.READY.value,
                    Hold.ended_at <= unlink_cutoff(now, self.settings.retention_days),
                )
            ).rowcount
            freed = session.execute(
                delete(ShelfCodeClaim).where(ShelfCodeClaim.released_at <= reuse_cutoff(now))
            ).rowcount
            for outbox in (PrintJob, Notice):
                finished = (
                    outbox.status != Delivery.QUEUED,
                    outbox.finished_at <= now - FINISHED_KEPT,
                )
                if outbox is Notice:  # the desk shows a notice's state while its hold waits
                    finished += (~self._hold_waits(outbox),)
                session.execute(delete(outbox).where(*finished))
        database.checkpoint(self.engine)
        log.info("purge: %d links deleted, %d codes freed", unlinked, freed)
        return PurgeReport(unlinked_holds=unlinked, freed_codes=freed)

    def stats(self, since: dt.date | None = None, branch_id: str | None = None) -> list[DayCounts]:
        """Daily counts per branch, newest first: the only numbers Holdshelf keeps."""
        query = select(DailyCount)
        if since:
            query = query.where(DailyCount.day >= since)
        if branch_id:
            query = query.where(DailyCount.branch == self.settings.branch(branch_id).id)
        with self._reads() as session:
            rows = session.scalars(query).all()
        return _group_days(rows)

    def usage(self) -> list[BranchUsage]:
        """Per branch: active holds and how full its code space is (raise code_length if it
        nears capacity)."""
        with self._reads() as session:
            active = dict(
                session.execute(
                    select(Hold.branch, func.count())
                    .where(Hold.status == HoldStatus.READY.value)
                    .group_by(Hold.branch)
                ).all()
            )
            claimed = dict(
                session.execute(
                    select(ShelfCodeClaim.branch, func.count()).group_by(ShelfCodeClaim.branch)
                ).all()
            )
        return [
            BranchUsage(
                branch=branch_id,
                active_holds=active.get(branch_id, 0),
                codes_in_use=claimed.get(branch_id, 0),
                code_capacity=codec.space * len(ALPHABET) // CHECK_MODULUS,
            )
            for branch_id, codec in self._codecs.items()
        ]
