"""Use case: finding holds (the desk's lists, the patrons' find-your-hold)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Any

from sqlalchemy import and_, case, func, or_, select, tuple_

from holdshelf.domain.holds import (
    HoldStatus,
    ShelfEntry,
)
from holdshelf.domain.inputs import clean_barcode
from holdshelf.errors import (
    InvalidInput,
    InvalidShelfCode,
)
from holdshelf.storage.models import (
    ACTIVE,
    Hold,
)
from holdshelf.workflow.base import (
    ENTRY_COLUMNS,
    HoldsBase,
)
from holdshelf.workflow.views import (
    AwaitingScan,
    HoldRequest,
    SectionCount,
)


class Lookups(HoldsBase):
    """Finding holds for staff and patrons; nothing here writes."""

    def find(
        self, code: str, branch_id: str | None = None, within: Collection[str] | None = None
    ) -> ShelfEntry:
        """The active hold with this code (NotFound, or Conflict if it has ended)."""
        with self._reads() as session:
            return self._entry(self._find_by_code(session, code, branch_id, within))

    def repeat_of(self, request: HoldRequest) -> ShelfEntry | None:
        """The active hold ``request`` repeats (the same item, patron and branch), if any."""
        with self._reads() as session:
            return self._repeat_of(session, request)

    def lookup(self, code: str) -> list[ShelfEntry]:
        """For patrons: the active holds with this code (one, or one per branch that has it).
        Unknown, ended and invalid codes do the same work, one query, and give the same
        answer, so the answer tells nobody which codes exist or existed."""
        try:
            parsed = [(branch, code.compact) for branch, code in self._parse(code, None).items()]
        except InvalidShelfCode:
            parsed = []
        # Always one pair per branch, so a miss of either kind runs the very same statement;
        # ("", "") matches nothing.
        matches = parsed + [("", "")] * (len(self.settings.branches) - len(parsed))
        with self._reads() as session:
            rows = session.execute(
                select(*ENTRY_COLUMNS).where(
                    or_(*(and_(Hold.branch == b, Hold.code == c) for b, c in matches)),
                    Hold.status == HoldStatus.READY.value,
                )
            ).all()
        return [self._entry(row) for row in rows]

    def shelf(
        self, branch_id: str | None = None, within: Collection[str] | None = None
    ) -> list[ShelfEntry]:
        """Active holds in shelving order (branch, then code)."""
        # Columns, not ORM objects: a busy branch has thousands of active holds.
        query = select(*ENTRY_COLUMNS).where(Hold.status == HoldStatus.READY.value)
        if branch_id:
            query = query.where(Hold.branch == self.settings.branch(branch_id).id)
        elif within:
            query = query.where(Hold.branch.in_(within))
        with self._reads() as session:
            rows = session.execute(query.order_by(Hold.branch, Hold.code)).all()
        return [self._entry(row) for row in rows]

    def shelf_page(
        self,
        branch_id: str | None = None,
        within: Collection[str] | None = None,
        *,
        limit: int,
        after: tuple[str, str] | None = None,
        section: str | None = None,
    ) -> tuple[list[ShelfEntry], bool]:
        """Up to ``limit`` active holds in shelving order (branch, then code), those after
        ``after`` (a branch and a compact code) only, of one ``section`` (a code's first
        character) if given; and whether more follow. Served by the (branch, code) index."""
        query = select(*ENTRY_COLUMNS).where(Hold.status == HoldStatus.READY.value)
        if branch_id:
            query = query.where(Hold.branch == self.settings.branch(branch_id).id)
        elif within:
            query = query.where(Hold.branch.in_(within))
        if after is not None:
            query = query.where(tuple_(Hold.branch, Hold.code) > tuple_(*after))
        if section is not None:
            query = query.where(Hold.code.startswith(section, autoescape=True))
        with self._reads() as session:
            rows = session.execute(query.order_by(Hold.branch, Hold.code).limit(limit + 1)).all()
        return [self._entry(row) for row in rows[:limit]], len(rows) > limit

    def shelf_sections(self, branch_id: str) -> list[SectionCount]:
        """A branch's active holds counted by shelf section (a code's first character): how
        many stand on the open shelf and behind the desk (a registered hold whose item is not
        scanned yet is in neither), are past their pickup-by date, or are missing from the
        ILS's last complete report; in shelving order."""
        today = self._clock.today()
        branch = self.settings.branch(branch_id).id
        section = func.substr(Hold.code, 1, 1)

        def counted(condition: Any) -> Any:
            return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

        # Every column here is in ix_holds_active_shelf: the counts read the index alone, not
        # the branch's rows. The few registered holds still awaiting their scan (on_scan, not
        # in that index) are counted apart, from their own index, and taken off.
        query = (
            select(
                section.label("section"),
                counted(Hold.mode == "shelf").label("on_shelf"),
                counted(Hold.mode == "desk").label("at_desk"),
                counted(Hold.pickup_by < today).label("overdue"),
                counted(Hold.not_in_ils_since.is_not(None)).label("missing"),
                func.count().label("holds"),
            )
            # The status as a literal, as the index says it: then SQLite needs no row to
            # check it.
            .where(Hold.branch == branch, ACTIVE)
            .group_by(section)
            .order_by(section)
        )
        unscanned = (
            select(section.label("section"), Hold.mode, func.count().label("holds"))
            .where(
                Hold.branch == branch,
                Hold.status == HoldStatus.READY.value,
                Hold.on_scan.is_not(None),
            )
            .group_by(section, Hold.mode)
        )
        with self._reads() as session:
            rows = session.execute(query).all()
            awaiting = {(r.section, r.mode): r.holds for r in session.execute(unscanned)}
        return [
            SectionCount(
                r.section,
                r.holds,
                r.on_shelf - awaiting.get((r.section, "shelf"), 0),
                r.at_desk - awaiting.get((r.section, "desk"), 0),
                r.overdue,
                r.missing,
            )
            for r in rows
        ]

    def to_move(self, branch_id: str) -> list[ShelfEntry]:
        """Open-shelf holds whose patrons chose staff pickup meanwhile: to take to the desk."""
        query = select(*ENTRY_COLUMNS).where(
            Hold.branch == self.settings.branch(branch_id).id,
            Hold.status == HoldStatus.READY.value,
            Hold.move_to_desk.is_(True),
        )
        with self._reads() as session:
            rows = session.execute(query.order_by(Hold.code)).all()
        return [self._entry(row) for row in rows]

    def awaiting_scan(self, branch_id: str) -> list[AwaitingScan]:
        """Holds an ILS registered at the branch whose items have not been scanned yet, oldest
        first, each with its item barcode (what the clerk looks for) and whether it is late."""
        late_from = self._clock() - self.settings.ils.scan_within
        with self._reads() as session:
            rows = session.execute(
                select(*ENTRY_COLUMNS, Hold.item_barcode)
                .where(
                    Hold.branch == self.settings.branch(branch_id).id,
                    Hold.status == HoldStatus.READY.value,
                    Hold.on_scan.is_not(None),
                )
                .order_by(Hold.ready_at, Hold.id)
            ).all()
        return [
            AwaitingScan(self._entry(row), row.item_barcode, late=row.ready_at <= late_from)
            for row in rows
        ]

    def overdue(self, branch_id: str, on: dt.date | None = None) -> list[ShelfEntry]:
        """Holds of a branch past their pickup-by date, in shelving order: what to pull (the
        open shelf's first, then the desk's)."""
        on = on or self._clock.today()
        with self._reads() as session:
            holds = session.scalars(
                select(Hold)
                .where(
                    Hold.branch == self.settings.branch(branch_id).id,
                    Hold.status == HoldStatus.READY.value,
                    Hold.pickup_by < on,
                )
                .order_by(Hold.mode.desc(), Hold.code)  # "shelf" before "desk"
            ).all()
            return [self._entry(hold) for hold in holds]

    def is_a_card(self, scan: str, branch_id: str | None = None) -> bool:
        """Whether a scan is a patron's card, by the rules or as a known patron's: the desk
        never puts such a value back into a page."""
        try:
            value = clean_barcode(scan)
        except InvalidInput:
            return False
        with self._reads() as session:
            return self._is_a_card(session, value, branch_id)
