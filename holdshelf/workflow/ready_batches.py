"""Making a report's holds ready set-based: a chunk of rows costs a handful of statements, not
a handful per row (a 50,000-row report took 110 s row by row on SQLite).

For a chunk: one query finds the items already active (skips, re-traps, conflicts), one the
patrons a misplaced card would name, one the stored preferences; codes are drawn for the whole
chunk and checked against ``shelf_codes`` in one query, claimed in one insert (ON CONFLICT DO
NOTHING ... RETURNING: a concurrent writer's claim wins and only the losers are drawn again);
holds, slips and notices go in with one executemany each (one COPY each on PostgreSQL). A
re-trap is rare and goes the row-by-row way (through Ending._end), and so does a chunk a
concurrent writer collides with."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import String, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from holdshelf.domain.codes import ShelfCode
from holdshelf.domain.holds import HoldStatus, PickupMode, ShelfEntry, mode_for
from holdshelf.errors import CodesExhausted
from holdshelf.sealing import Sealer
from holdshelf.settings import BranchSettings
from holdshelf.storage import wakeup
from holdshelf.storage.bulk import among, insert_many, listed
from holdshelf.storage.models import (
    Delivery,
    Hold,
    Notice,
    PatronPreference,
    PrintJob,
    Priority,
    ShelfCodeClaim,
)
from holdshelf.workflow.base import already_active
from holdshelf.workflow.slips import Slips
from holdshelf.workflow.views import BatchOutcome, HoldRequest

log = logging.getLogger(__name__)

READY = HoldStatus.READY.value

CLAIM_ROUNDS = 25  # as for one hold: a branch this full says so rather than draw for ever
MOST_DRAWS_PER_ROW = 64
# Core tables, not the mapped classes: an executemany of plain rows skips the ORM's bulk path.
HOLDS, PRINT_JOBS, NOTICES, CLAIMS = (
    model.__table__ for model in (Hold, PrintJob, Notice, ShelfCodeClaim)
)
PREFERENCES = PatronPreference.__table__
# The chunk's questions, each with its list as one parameter (see storage.bulk.among).
HOLDS_OF_ITEMS = select(Hold).where(among(HOLDS.c.item_barcode, "items"))
HOLDS_OF_PATRONS = select(HOLDS.c.patron, HOLDS.c.status).where(among(HOLDS.c.patron, "patrons"))
CHOICES_OF_PATRONS = select(PREFERENCES.c.patron, PREFERENCES.c.mode).where(
    among(PREFERENCES.c.patron, "patrons")
)
CLAIMS_AMONG = select(CLAIMS.c.code).where(
    CLAIMS.c.branch == bindparam("branch"), among(CLAIMS.c.code, "codes")
)
CARD_IN_THE_WRONG_FIELD = {
    "item_barcode": "this is a patron's card, not an item barcode: scan the item",
    "sms": "this is a patron's card, not a mobile number",
}


@dataclass
class Planned:
    """What a chunk's pass over the rows decided for one row."""

    request: HoldRequest
    outcome: BatchOutcome | None = None  # decided already: a skip or an error
    retrap: Hold | None = None  # the other patron's hold, ended the slow way
    mode: PickupMode | None = None  # to be made, with this mode


def chunks(requests: Sequence[HoldRequest], size: int) -> Iterable[Sequence[HoldRequest]]:
    """``requests`` in runs of at most ``size`` with no item twice in a run: a later row for
    the same item must see the earlier one's hold, as it would row by row."""
    start = 0
    while start < len(requests):
        seen: set[str] = set()
        end = start
        while end < len(requests) and end - start < size and requests[end].item not in seen:
            seen.add(requests[end].item)
            end += 1
        yield requests[start:end]
        start = end


class ReadyBatches(Slips):
    """The set-based half of MakingReady.ready_many."""

    def _plan_chunk(self, session: Session, chunk: Sequence[HoldRequest]) -> list[Planned]:
        """Each row's fate as far as the database's present state tells it, in a few queries."""
        # The status is checked here, not in the query: given "status = ?", SQLite searched
        # the index on status, every active hold for each chunk (an import slowed as the shelf
        # grew); the item's and the patron's own index find only their few holds.
        items = [r.item for r in chunk]
        active = {
            hold.item_barcode: hold
            for hold in session.scalars(HOLDS_OF_ITEMS, {"items": items})
            if hold.status == READY
        }
        planned = [self._against_active(r, active.get(r.item)) for r in chunk]
        fresh = [p for p in planned if p.outcome is None and p.retrap is None]
        self._check_misplaced(session, fresh)
        self._choose_modes(session, [p for p in fresh if p.outcome is None])
        return planned

    def _against_active(self, request: HoldRequest, active: Hold | None) -> Planned:
        """A row against its item's active hold: none, a repeat, a re-trap or a conflict."""
        if active is None:
            return Planned(request)
        if active.branch == request.branch.id and active.patron != request.patron:
            return Planned(request, retrap=active)
        if active.branch != request.branch.id or active.patron != request.patron:
            error = already_active(active, another_patron=active.patron != request.patron)
            return Planned(request, outcome=BatchOutcome(error=str(error)))
        return Planned(request, outcome=BatchOutcome(entry=self._entry(active), skipped=True))

    def _check_misplaced(self, session: Session, fresh: list[Planned]) -> None:
        """A card scanned into the item or mobile field: a patron known to the database, or
        made known by an earlier row of the chunk, as row by row."""
        asked = {pseudonym for p in fresh for _, pseudonym in p.request.misplaced}
        known: set[str | None] = set()
        if asked:
            connection = session.connection()
            holds = connection.execute(HOLDS_OF_PATRONS, {"patrons": asked})
            known = {patron for patron, status in holds if status == READY}
            known.update(
                patron for patron, _ in connection.execute(CHOICES_OF_PATRONS, {"patrons": asked})
            )
        for planned in fresh:
            for field_name, pseudonym in planned.request.misplaced:
                if pseudonym in known:
                    planned.outcome = BatchOutcome(error=CARD_IN_THE_WRONG_FIELD[field_name])
                    break
            if planned.outcome is None:
                known.add(planned.request.patron)

    def _choose_modes(self, session: Session, fresh: list[Planned]) -> None:
        """Each patron's standing choice (one who opted out goes to the desk), in one query."""
        patrons = {p.request.patron for p in fresh}
        chosen: dict[str, str] = {}
        if patrons:
            found = session.connection().execute(CHOICES_OF_PATRONS, {"patrons": patrons})
            chosen = dict(found.all())  # a Result has keys(): no dict()
        default = self.settings.default_pickup
        for planned in fresh:
            preference = chosen.get(planned.request.patron)
            planned.mode = mode_for(PickupMode(preference) if preference else None, default)

    def _make_chunk(self, session: Session, fresh: list[Planned], now: dt.datetime) -> None:
        """The chunk's new holds, codes, slips and notices; a row whose branch has no code
        left gets its error. An IntegrityError (a concurrent writer trapped one of the items)
        is for the caller, who rolls the chunk back and takes it row by row."""
        by_branch: dict[str, list[Planned]] = {}
        for planned in fresh:
            by_branch.setdefault(planned.request.branch.id, []).append(planned)
        made: list[tuple[Planned, ShelfEntry]] = []
        for rows in by_branch.values():
            codes = self._claim_codes(session, rows[0].request.branch, len(rows))
            for planned, code in zip(rows, codes + [None] * (len(rows) - len(codes)), strict=True):
                if code is None:
                    planned.outcome = BatchOutcome(error=str(exhausted(planned.request.branch)))
                else:
                    made.append((planned, self._new_entry(planned, code)))
        if made:
            self._insert_made(session, made, now)
            log.info("%d holds of a report made ready", len(made))  # one line, not one a row

    def _new_entry(self, planned: Planned, code: ShelfCode) -> ShelfEntry:
        """The new hold as it will be shown (what _entry makes of its row, without the row)."""
        request = planned.request
        assert planned.mode is not None
        entry = ShelfEntry(
            code=code,
            branch=request.branch.id,
            branch_name=request.branch.name,
            pickup_by=request.due,
            mode=planned.mode,
        )
        planned.outcome = BatchOutcome(entry=entry)
        return entry

    def _insert_made(
        self, session: Session, made: list[tuple[Planned, ShelfEntry]], now: dt.datetime
    ) -> None:
        """Holds, then their slips and notices, one insert_many each."""
        connection = session.connection()
        holds = [
            {
                "code": entry.code.compact,
                "item_barcode": planned.request.item,
                "patron": planned.request.patron,
                "mode": entry.mode.value,
                "pickup_by": entry.pickup_by,
                "branch": entry.branch,
            }
            for planned, entry in made
        ]
        made_now = {"status": HoldStatus.READY.value, "ready_at": now}
        insert_many(connection, HOLDS, holds, {**made_now, "move_to_desk": False, "on_scan": None})
        slips = [self._slip_row(p, e) for p, e in made]
        insert_many(connection, PRINT_JOBS, slips, {"kind": "slip", **self._queued(now)})
        notices = self._notice_rows(made)
        insert_many(connection, NOTICES, notices, self._queued(now))
        wakeup.mark_queued(session)  # Core inserts pass no flush: say so, to wake the workers

    @staticmethod
    def _queued(now: dt.datetime) -> dict[str, object]:
        """What every new slip or notice of an import starts with."""
        return {
            "status": Delivery.QUEUED.value,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
            "priority": Priority.BULK.value,  # a clerk's slip at the desk goes first
        }

    def _slip_row(self, planned: Planned, entry: ShelfEntry) -> dict[str, object]:
        slip = self._slip_for(entry, planned.request.item, planned.request.title)
        payload = json.dumps(slip.payload())
        return {"branch": entry.branch, "code": entry.code.compact, "payload": payload}

    def _notice_rows(self, made: list[tuple[Planned, ShelfEntry]]) -> list[dict[str, object]]:
        """A row per contact, its address and title sealed: never stored in the clear (the
        title only where notices show it)."""
        sealer = Sealer(self.settings.data_key)
        show_title = self.settings.notices.show_title
        rows: list[dict[str, object]] = []
        for planned, entry in made:
            title = planned.request.title if show_title and planned.request.title else None
            for channel, address in planned.request.contacts.items():
                rows.append(
                    {
                        "branch": entry.branch,
                        "code": entry.code.compact,
                        "channel": channel,
                        "sealed": sealer.seal({"to": address, "title": title}),
                    }
                )
        return rows

    def _claim_codes(
        self, session: Session, branch: BranchSettings, wanted: int
    ) -> list[ShelfCode]:
        """Up to ``wanted`` random codes no active or resting hold of the branch has, claimed:
        fewer only when the branch has run out. As for one code (_claim_code), the claim's
        primary key settles races: a code another writer claimed first is drawn again."""
        claimed: list[ShelfCode] = []
        for round_ in range(CLAIM_ROUNDS):
            missing = wanted - len(claimed)
            if missing == 0:
                break
            # Round one draws a code per row (nearly all free on a roomy branch); a branch
            # filling up gets twice as many draws each round.
            draws = missing * min(MOST_DRAWS_PER_ROW, 2**round_)
            codec = self._codecs[branch.id]
            drawn = list(dict.fromkeys(codec.draw(self._randbelow) for _ in range(draws)))
            candidates = self._free_candidates(session, branch, drawn)
            claimed += self._claimed_free(session, branch, candidates[:missing])
        return claimed

    def _claimed_free(
        self, session: Session, branch: BranchSettings, free: list[ShelfCode]
    ) -> list[ShelfCode]:
        """Claim codes ``free`` when this transaction looked. On SQLite they still are: the
        write lock this transaction began with keeps every other writer out, so they go in
        with one plain executemany (a collision all the same would be an IntegrityError, and
        the chunk would be taken row by row). Elsewhere another writer may have claimed one
        since (see _claimed)."""
        connection = session.connection()
        if connection.dialect.name != "sqlite":
            return self._claimed(session, branch, free)
        codes = [{"code": code.compact} for code in free]
        insert_many(connection, CLAIMS, codes, {"branch": branch.id, "released_at": None})
        return free

    @staticmethod
    def _free_candidates(
        session: Session, branch: BranchSettings, drawn: list[ShelfCode]
    ) -> list[ShelfCode]:
        """The ``drawn`` codes (distinct) that no claim holds, in the order drawn."""
        codes = [code.compact for code in drawn]
        found = session.connection().execute(CLAIMS_AMONG, {"branch": branch.id, "codes": codes})
        taken = set(found.scalars())
        return [code for code in drawn if code.compact not in taken]

    @staticmethod
    def _claimed(
        session: Session, branch: BranchSettings, candidates: list[ShelfCode]
    ) -> list[ShelfCode]:
        """Claim ``candidates`` in one insert; those another writer took meanwhile are left
        out of what it returns (no savepoint, no error)."""
        if not candidates:
            return []
        connection = session.connection()
        # In order: two writers claiming overlapping codes wait for each other's rows in the
        # same order, never in a circle (a deadlock). RETURNING gives the rows inserted, not
        # those that conflicted.
        codes = sorted(code.compact for code in candidates)
        if connection.dialect.name == "postgresql":  # one array: one statement for any number
            found = connection.execute(CLAIM_LISTED, {"branch": branch.id, "codes": codes})
        else:  # SQLite: a ready's one code (an import claims under its write lock, see above)
            found = connection.execute(
                CLAIM_EACH, [{"branch": branch.id, "code": c} for c in codes]
            )
        won = set(found.scalars())
        return [code for code in candidates if code.compact in won]


CLAIM_EACH = sqlite.insert(CLAIMS).on_conflict_do_nothing().returning(CLAIMS.c.code)
CLAIM_LISTED = (
    postgresql.insert(CLAIMS)
    .from_select(
        ["branch", "code"],
        select(
            bindparam("branch", type_=String),
            func.unnest(listed("codes")),
        ),
    )
    .on_conflict_do_nothing()
    .returning(CLAIMS.c.code)
)


def exhausted(branch: BranchSettings) -> CodesExhausted:
    return CodesExhausted(f"branch {branch.id} has no free shelf code left: raise its code_length")
