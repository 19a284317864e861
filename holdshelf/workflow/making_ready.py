"""Use case: making holds ready (the desk, the CLI, the API, report imports)."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from holdshelf.domain.codes import ShelfCode
from holdshelf.domain.contacts import clean_email, clean_phone
from holdshelf.domain.holds import (
    HoldStatus,
    PickupMode,
    ShelfEntry,
    mode_for,
)
from holdshelf.domain.inputs import checked
from holdshelf.errors import (
    CodesExhausted,
    Conflict,
    HoldshelfError,
    InvalidInput,
)
from holdshelf.sealing import Sealer
from holdshelf.settings import BranchSettings
from holdshelf.storage import database
from holdshelf.storage.counters import bump
from holdshelf.storage.models import (
    Delivery,
    Hold,
    Notice,
    PatronPreference,
    Priority,
)
from holdshelf.workflow.base import (
    ACTIVE_HOLD_OF_ITEM,
    _as_card,
    already_active,
    known_patron,
)
from holdshelf.workflow.ending import Ending
from holdshelf.workflow.ready_batches import (
    CARD_IN_THE_WRONG_FIELD,
    HOLDS,
    ReadyBatches,
    chunks,
)
from holdshelf.workflow.views import (
    BatchOutcome,
    HoldRequest,
)

log = logging.getLogger(__name__)

# Candidates are drawn in batches and the database asked once per batch which are taken; the
# batch doubles each round (4, 8, 16 ... 64), so an empty branch pays for few draws and a nearly
# full one still finds a free code quickly.
FIRST_CANDIDATES = 4
MOST_CANDIDATES = 64
CLAIM_ROUNDS = 25
BULK_TABLES = ("holds", "shelf_codes", "print_jobs", "notices")  # what an import grows
REFRESH_AFTER_ROWS = 200  # a batch this big may leave the planner's statistics behind
BATCH_SIZE = 2000  # rows per transaction when importing (on SQLite, fewer: see below)
CHUNK_SIZE = 250  # rows taken set-based at once: a few statements for all of them
# SQLite has one write lock: an import holds it for a batch at most this long, then pauses for
# a writer waiting meanwhile (a desk check-in, the worker recording a slip) to take it; waiting
# writers try every millisecond or two (see database._begin_writing). Not on PostgreSQL, whose
# writers lock rows, not the database. A quarter of a second, not a tenth: each commit writes
# the index pages its rows touched, nearly all of them once the shelf is big, and pauses; a
# 50,000-row import took a second or two longer in batches of a tenth.
SQLITE_BATCH_SECONDS = 0.25
SQLITE_PAUSE_SECONDS = 0.005
# Built once (see base.ACTIVE_HOLD_OF_ITEM): every new hold runs them.
PREFERENCE_OF = select(PatronPreference.mode).where(PatronPreference.patron == bindparam("patron"))


@dataclass(frozen=True)
class Looked:
    """What the rules of one new hold ask the database, asked in one SELECT (see _look): a
    round trip each cost PostgreSQL's API more than anything else in it."""

    active: bool  # the item has an active hold (read whole only then: a repeat or a conflict)
    misplaced_known: tuple[bool, ...]  # for each of the request's misplaced: a known patron
    preference: str | None  # the patron's standing choice


@functools.cache
def _look_statement(misplaced: int) -> Select[Any]:
    active = ACTIVE_HOLD_OF_ITEM.with_only_columns(Hold.id).limit(1).scalar_subquery()
    known = [known_patron(bindparam(f"misplaced_{n}")) for n in range(misplaced)]
    return select(active.is_not(None), *known, PREFERENCE_OF.scalar_subquery())


INSERT_HOLD = insert(HOLDS).returning(HOLDS.c.id)


class MakingReady(Ending, ReadyBatches):
    """Making trapped items ready: one at the desk, the CLI or the API, or a report's many (a
    report's re-trap ends the earlier hold the way every hold ends)."""

    def hold_request(
        self,
        branch_id: str,
        item: str,
        card: str,
        pickup_by: dt.date | None = None,
        *,
        title: str | None = None,
        email: str | None = None,
        sms: str | None = None,
    ) -> HoldRequest:
        """Check a request to make a hold ready; the card becomes a pseudonym here."""
        branch = self.settings.branch(branch_id)
        today = self._clock.today()
        policy = branch.policy
        item = checked("item_barcode", branch.barcodes.item, item)
        card = checked("patron_card", branch.barcodes.card, card)
        contacts = self._contacts(email, sms)
        scanned = {"item_barcode": item, "sms": contacts.get("sms")}
        misplaced = []
        for field_name, value in scanned.items():
            as_card = _as_card(value) if value else None
            if as_card is None:
                continue
            if as_card == card or branch.barcodes.is_card(value or ""):
                raise InvalidInput(CARD_IN_THE_WRONG_FIELD[field_name], field=field_name)
            misplaced.append((field_name, self._pseudonym(as_card)))
        return HoldRequest(
            branch=branch,
            item=item,
            patron=self._pseudonym(card),
            due=policy.check_requested(pickup_by, today) if pickup_by else policy.pickup_by(today),
            contacts=contacts,
            title=title,
            misplaced=tuple(misplaced),
        )

    def ready(
        self,
        branch_id: str,
        item: str,
        card: str,
        pickup_by: dt.date | None = None,
        *,
        title: str | None = None,
        email: str | None = None,
        sms: str | None = None,
    ) -> ShelfEntry:
        """Put a trapped item on the hold shelf (or at the desk), give it a fresh code, queue
        its slip and its notices, all in one transaction.

        ``title`` reaches the slip or notice only where the library shows titles; it is never
        stored otherwise. ``email`` and ``sms`` are stored only encrypted, until sent."""
        return self.ready_request(
            self.hold_request(branch_id, item, card, pickup_by, title=title, email=email, sms=sms)
        )

    def ready_request(self, request: HoldRequest, *, on_scan: bool = False) -> ShelfEntry:
        """Make a checked request ready, in one transaction. ``on_scan``: an ILS registers the
        hold ahead of the item (API "print": "on-scan"); the item's scan at the desk queues its
        slip and notices (see print_registered), until then they wait, sealed, with the hold."""
        now = self._clock()
        with self._sessions.begin() as session:
            entry = self._ready_in(session, request, now, on_scan=on_scan)
            bump(session, now.date(), entry.branch, HoldStatus.READY.value, entry.mode.value)
            return entry

    def ready_once(self, request: HoldRequest, *, on_scan: bool = False) -> tuple[ShelfEntry, bool]:
        """``ready_request`` where a repeat (the same item, patron and branch: an API retry, a
        second scan) is that hold again, not a conflict; one transaction. Returns the hold and
        whether it was made now. Another patron's or branch's active hold is a Conflict."""
        now = self._clock()
        try:
            with self._sessions.begin() as session:
                looked = self._look(session, request)
                if looked.active:
                    repeated = self._repeat_of(session, request)
                    if repeated is not None:
                        return repeated, False
                entry = self._ready_in(
                    session, request, now, checked=True, on_scan=on_scan, looked=looked
                )
                bump(session, now.date(), entry.branch, HoldStatus.READY.value, entry.mode.value)
                return entry, True
        except Conflict:
            existing = self.repeat_of(request)  # a concurrent writer made this very hold
            if existing is None:
                raise
            return existing, False

    def ready_many(
        self, requests: Sequence[HoldRequest], *, atomic: bool = False, dry_run: bool = False
    ) -> list[BatchOutcome]:
        """Make many holds ready (a report from the ILS). An item already active at the same
        branch for the same patron is skipped, so a report can be imported again and again;
        active there for another patron, the ILS re-trapped it (the first hold was cancelled
        there): that hold ends as cancelled and the new one is made. A row that fails rolls
        back alone; with ``atomic``, any failure rolls back every row; ``dry_run`` rolls back
        all at the end. Those two need one transaction, which on SQLite holds the write lock
        (every other writer waits) for the whole import; otherwise rows are committed in
        batches, on SQLite short ones with a pause between them."""
        outcomes: list[BatchOutcome] = []
        now = self._clock()
        whole = atomic or dry_run
        sliced = not whole and self.engine.dialect.name == "sqlite"
        analysed = unanalysed = 0  # rows made by this import before and since its last ANALYZE
        while len(outcomes) < len(requests):
            if outcomes and sliced:
                time.sleep(SQLITE_PAUSE_SECONDS)
            start = len(outcomes)
            batch = requests[start:] if whole else requests[start : start + BATCH_SIZE]
            with self._sessions() as session:
                transaction = session.begin()
                made = self._ready_batch(session, batch, now, outcomes, sliced)
                # One update per counter and batch: a row updated once per hold piles up
                # versions in PostgreSQL and slows every later update of it.
                for (branch, mode), number in made.items():
                    bump(session, now.date(), branch, HoldStatus.READY.value, mode, by=number)
                failed = any(outcome.error for outcome in outcomes[start:])  # this batch's
                if dry_run or (atomic and failed):
                    transaction.rollback()
                    continue
                transaction.commit()
            unanalysed += sum(made.values())
            # Again each time the tables may have doubled: a handful of ANALYZEs per import,
            # not one per batch.
            if unanalysed >= max(REFRESH_AFTER_ROWS, analysed):
                database.refresh_statistics(self.engine, BULK_TABLES)
                analysed, unanalysed = analysed + unanalysed, 0
        if not dry_run and any(outcome.replaced for outcome in outcomes):
            self._fold_erased()  # a re-trap erased the earlier patron's link
        return outcomes

    def _ready_batch(
        self,
        session: Session,
        batch: Sequence[HoldRequest],
        now: dt.datetime,
        outcomes: list[BatchOutcome],
        sliced: bool,
    ) -> Counter[tuple[str, str]]:
        """Make the batch's holds ready in ``session``, chunk by chunk, appending to
        ``outcomes``; a ``sliced`` batch stops short after SQLITE_BATCH_SECONDS. Returns the
        holds made per branch and mode."""
        until = None
        if sliced:
            session.connection()  # BEGIN IMMEDIATE: the write lock is held from here
            until = time.monotonic() + SQLITE_BATCH_SECONDS
        made: Counter[tuple[str, str]] = Counter()
        for chunk in chunks(batch, CHUNK_SIZE):
            for outcome in self._ready_chunk(session, chunk, now):
                outcomes.append(outcome)
                if outcome.entry is not None and not outcome.skipped:
                    made[outcome.entry.branch, outcome.entry.mode.value] += 1
            if until is not None and time.monotonic() >= until:
                break
        return made

    def _ready_chunk(
        self, session: Session, chunk: Sequence[HoldRequest], now: dt.datetime
    ) -> list[BatchOutcome]:
        """The chunk's outcomes, set-based; re-traps row by row. A chunk that collides with a
        concurrent writer (the same item trapped meanwhile) is rolled back and taken row by
        row, so only the colliding row fails."""
        planned = self._plan_chunk(session, chunk)
        for row in planned:
            if row.retrap is not None:
                row.outcome = self._retrap(session, row.retrap, row.request, now)
        fresh = [row for row in planned if row.outcome is None]
        try:
            with session.begin_nested():
                self._make_chunk(session, fresh, now)
        except IntegrityError:
            for row in fresh:
                row.outcome = self._ready_one_of_many(session, row.request, now)
        outcomes = [row.outcome for row in planned]
        assert all(outcome is not None for outcome in outcomes)
        return outcomes  # type: ignore[return-value]

    def _ready_one_of_many(
        self, session: Session, request: HoldRequest, now: dt.datetime
    ) -> BatchOutcome:
        active = self._active_hold_of(session, request.item)
        if active is not None and _is_retrap(active, request):
            return self._retrap(session, active, request, now)
        try:
            repeated = self._repeat(active, request)
        except Conflict as exc:  # another branch's hold: said, not skipped
            return BatchOutcome(error=str(exc))
        if repeated is not None:
            return BatchOutcome(entry=repeated, skipped=True)
        try:
            with session.begin_nested():
                entry = self._ready_in(session, request, now, checked=True, bulk=True)
                return BatchOutcome(entry=entry)
        except HoldshelfError as exc:
            return BatchOutcome(error=str(exc))

    def _retrap(
        self, session: Session, active: Hold, request: HoldRequest, now: dt.datetime
    ) -> BatchOutcome:
        """The item, active here for another patron, is trapped for this one: the ILS
        cancelled the first hold and gave the item to the next in its queue. The first hold
        ends as a cancel at the desk would end it (its link erased, its code resting), in the
        row's savepoint with the new hold, so neither happens without the other."""
        try:
            with session.begin_nested():
                replaced = self._end(session, active, HoldStatus.CANCELLED, now)
                entry = self._ready_in(session, request, now, checked=True, bulk=True)
        except HoldshelfError as exc:
            return BatchOutcome(error=str(exc))
        log.info("item re-trapped at %s: hold %s cancelled", entry.branch, active.id)
        return BatchOutcome(entry=entry, replaced=replaced)

    def _ready_in(
        self,
        session: Session,
        request: HoldRequest,
        now: dt.datetime,
        *,
        checked: bool = False,
        on_scan: bool = False,
        bulk: bool = False,
        looked: Looked | None = None,
    ) -> ShelfEntry:
        """The hold, its code, slip and notices (or, ``on_scan``, the hold alone, with what its
        slip and notices need sealed); the caller counts it (see ready_many), and may have
        ``checked`` already that the item has no active hold. A ``bulk`` hold's slip and
        notices wait for every desk one (Priority)."""
        branch = request.branch
        for n, (field_name, pseudonym) in enumerate(request.misplaced):
            known = looked.misplaced_known[n] if looked else self._known_patron(session, pseudonym)
            if known:
                raise InvalidInput(CARD_IN_THE_WRONG_FIELD[field_name], field=field_name)
        active = None if checked else self._active_hold_of(session, request.item)
        if active is not None:
            raise already_active(active)
        if looked is not None:
            preference = looked.preference
        else:
            preference = session.scalar(PREFERENCE_OF, {"patron": request.patron})
        chosen = PickupMode(preference) if preference else None
        mode = mode_for(chosen, self.settings.default_pickup)
        code = self._claim_code(session, branch)
        session.flush()  # what the caller changed goes first (a re-trap's ended hold)
        try:  # the caller's transaction (or a batch row's savepoint) is rolled back with it
            hold_id = (
                session.connection()
                .execute(
                    INSERT_HOLD,
                    {
                        "branch": branch.id,
                        "code": code.compact,
                        "item_barcode": request.item,
                        "patron": request.patron,
                        "mode": mode.value,
                        "status": HoldStatus.READY.value,
                        "pickup_by": request.due,
                        "ready_at": now,
                        "move_to_desk": False,
                        "on_scan": self._sealer.seal(self._kept_for_the_scan(request))
                        if on_scan
                        else None,
                    },
                )
                .scalar_one()
            )
        except IntegrityError:  # the same item, trapped by a concurrent writer
            raise Conflict("this item already has an active hold") from None
        entry = ShelfEntry(
            code=code,
            branch=branch.id,
            branch_name=branch.name,
            pickup_by=request.due,
            mode=mode,
            awaiting_scan_since=now if on_scan else None,
        )
        if on_scan:
            log.info("hold %s registered at %s (%s): its scan prints it", hold_id, branch.id, mode)
            return entry
        priority = Priority.BULK if bulk else Priority.DESK
        self._queue_slip(
            session, entry, "slip", now, item=request.item, title=request.title, priority=priority
        )
        self._queue_notices(session, entry, request.contacts, now, request.title, priority)
        log.info("hold %s ready at %s (%s)", hold_id, branch.id, mode.value)
        return entry

    def print_registered(
        self, branch_id: str, item: str, *, email: str | None = None, sms: str | None = None
    ) -> ShelfEntry | None:
        """The item's scan at the desk for a hold an ILS registered ahead of it: at its own
        branch the slip is queued and the notices go (to ``email`` and ``sms`` too, typed at
        the scan). None when no hold of the item waits for a scan; a hold waiting at another
        branch comes back untouched (the item goes there)."""
        branch = self.settings.branch(branch_id)
        item = checked("item_barcode", branch.barcodes.item, item)
        with self._reads() as session:  # most scans find nothing: no write lock for them
            waiting = session.scalar(
                select(Hold.id).where(
                    Hold.item_barcode == item,
                    Hold.status == HoldStatus.READY.value,
                    Hold.on_scan.is_not(None),
                )
            )
        if waiting is None:
            return None
        now = self._clock()
        with self._sessions.begin() as session:
            hold = self._active_hold_of(session, item)
            if hold is None or hold.on_scan is None:  # ended, or scanned, meanwhile
                return None
            if hold.branch != branch.id:
                return self._entry(hold)
            typed = self._contacts(email, sms)  # checked only where they would be used
            entry = self._print_on_scan(session, hold, now, typed)
        log.info("hold %s scanned: slip queued", hold.id)
        return entry

    def _requeue_slip(self, session: Session, hold: Hold, now: dt.datetime) -> ShelfEntry:
        """A registered hold's first slip, however it is asked for (a reprint, a new date),
        is its scan: the notices go with it."""
        if hold.on_scan is not None:
            return self._print_on_scan(session, hold, now)
        return super()._requeue_slip(session, hold, now)

    def _print_on_scan(
        self,
        session: Session,
        hold: Hold,
        now: dt.datetime,
        typed: dict[str, str] | None = None,
    ) -> ShelfEntry:
        """Queue the slip and notices of a registered hold, once: a concurrent scan that
        printed it first leaves this one nothing to do."""
        sealed = hold.on_scan
        taken = session.execute(
            update(Hold)
            .where(Hold.id == hold.id, Hold.on_scan.is_not(None))
            .values(on_scan=None, ready_at=now)
            .execution_options(synchronize_session="fetch")
        ).rowcount
        entry = self._entry(hold)
        if not taken or sealed is None:
            return entry
        kept = self._sealer.unseal(sealed)
        title, contacts = kept.get("title"), dict(kept.get("contacts") or {}) | (typed or {})
        self._queue_slip(session, entry, "slip", now, item=hold.item_barcode, title=title)
        self._queue_notices(session, entry, contacts, now, title)
        return entry

    def _contacts(self, email: str | None, sms: str | None) -> dict[str, str]:
        """The contacts a hold arrived with, checked; refused where the channel is not set up."""
        contacts = {}
        if email and email.strip():
            if not self.settings.mail.enabled:
                raise InvalidInput("email notices are not set up here ([mail] host)", field="email")
            contacts["email"] = checked("email", clean_email, email)
        if sms and sms.strip():
            if not self.settings.sms.enabled:
                raise InvalidInput(
                    "text-message notices are not set up here ([sms] gateway)", field="sms"
                )
            contacts["sms"] = checked("sms", clean_phone, sms)
        return contacts

    def _kept_for_the_scan(self, request: HoldRequest) -> dict[str, Any]:
        """What a registered hold's slip and notices will need at the scan, and only what the
        library lets reach them: the title where slips or notices show it, the contacts."""
        shows_title = self.settings.slip_options.show_title or self.settings.notices.show_title
        return {"title": request.title if shows_title else None, "contacts": request.contacts}

    @property
    def _sealer(self) -> Sealer:
        return Sealer(self.settings.data_key)

    def _queue_notices(
        self,
        session: Session,
        entry: ShelfEntry,
        contacts: dict[str, str],
        now: dt.datetime,
        title: str | None,
        priority: Priority = Priority.DESK,
    ) -> None:
        if not contacts:
            return
        sealer = self._sealer
        shown_title = title if self.settings.notices.show_title and title else None
        for channel, address in contacts.items():
            session.add(
                Notice(
                    branch=entry.branch,
                    code=entry.code.compact,
                    channel=channel,
                    sealed=sealer.seal({"to": address, "title": shown_title}),
                    status=Delivery.QUEUED,
                    attempts=0,
                    created_at=now,
                    next_attempt_at=now,
                    priority=priority.value,
                )
            )

    @staticmethod
    def _look(session: Session, request: HoldRequest) -> Looked:
        """For ready_once: the item's active hold, the misplaced cards, the patron's choice."""
        misplaced = {f"misplaced_{n}": p for n, (_, p) in enumerate(request.misplaced)}
        params = {"item": request.item, "patron": request.patron, **misplaced}
        row = session.execute(_look_statement(len(misplaced)), params).one()
        return Looked(bool(row[0]), tuple(bool(known) for known in row[1:-1]), row[-1])

    def _claim_code(self, session: Session, branch: BranchSettings) -> ShelfCode:
        """A random code no active or resting hold of the branch has, claimed in the database.

        The claim's primary key settles races between writers (processes or app servers): the
        loser's insert does nothing and it simply takes another candidate."""
        codec = self._codecs[branch.id]
        # Most branches have room: the first code drawn is nearly always free, and trying to
        # claim it is one statement; only a taken one leads to the batches below.
        first = codec.draw(self._randbelow)
        if self._claimed(session, branch, [first]):
            return first
        for round_ in range(CLAIM_ROUNDS):
            batch = min(MOST_CANDIDATES, FIRST_CANDIDATES * 2**round_)
            candidates = list(dict.fromkeys(codec.draw(self._randbelow) for _ in range(batch)))
            for code in self._free_candidates(session, branch, candidates):
                # Another writer may claim it between our look and our insert: its row wins
                # and we take the next candidate (no savepoint: an import makes thousands).
                if self._claimed(session, branch, [code]):
                    return code
        raise CodesExhausted(
            f"branch {branch.id} has no free shelf code left: raise its code_length"
        )


def _is_retrap(active: Hold, request: HoldRequest) -> bool:
    """The item is active at the request's branch for another patron: the ILS gave it to the
    next in its queue (another branch's hold stays a conflict: its shelf is not this one)."""
    return active.branch == request.branch.id and active.patron != request.patron
