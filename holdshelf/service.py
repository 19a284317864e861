"""The hold-shelf workflow: the one place where the domain rules meet storage.

Every operation is one transaction: it happens completely or not at all. Card numbers enter
here and leave as pseudonyms; what comes out (:class:`ShelfEntry`, :class:`PatronView`) carries
no patron data.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, Row, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from holdshelf.domain.barcodes import BarcodeRules
from holdshelf.domain.codes import ALPHABET, CHECK_MODULUS, ShelfCode, ShelfCodec
from holdshelf.domain.contacts import clean_email, clean_phone
from holdshelf.domain.holds import (
    HoldStatus,
    PickupMode,
    ShelfEntry,
    desk_day,
    end_transition,
    mode_for,
    reuse_cutoff,
    stored_preference,
    unlink_cutoff,
)
from holdshelf.domain.inputs import checked, clean_barcode, normalise_card
from holdshelf.domain.pseudonyms import Pseudonymizer
from holdshelf.domain.slips import Slip
from holdshelf.errors import (
    CodesExhausted,
    Conflict,
    HoldshelfError,
    InvalidInput,
    InvalidShelfCode,
    NotFound,
)
from holdshelf.sealing import Sealer
from holdshelf.settings import BranchSettings, Settings
from holdshelf.storage import database
from holdshelf.storage.counters import bump
from holdshelf.storage.database import read_sessions, stored_time
from holdshelf.storage.models import (
    DailyCount,
    Delivery,
    Hold,
    Notice,
    PatronPreference,
    PrintJob,
    ShelfCodeClaim,
)

log = logging.getLogger(__name__)

# Candidates are drawn in batches and the database asked once per batch which are taken; the
# batch doubles each round (4, 8, 16 ... 64), so an empty branch pays for few draws and a nearly
# full one still finds a free code quickly.
FIRST_CANDIDATES = 4
MOST_CANDIDATES = 64
CLAIM_ROUNDS = 25
MOVED_TO_DESK = "moved_to_desk"
BULK_TABLES = ("holds", "shelf_codes", "print_jobs", "notices")  # what an import grows
REFRESH_AFTER_ROWS = 200  # a batch this big may leave the planner's statistics behind
BATCH_SIZE = 500  # rows per transaction when importing (each row in its own savepoint)
# SQLite has one write lock: an import holds it for a batch at most this long, then pauses for
# a writer waiting meanwhile (a desk check-in, the worker recording a slip) to take it; waiting
# writers try every millisecond or two (see database._begin_writing). Not on PostgreSQL, whose
# writers lock rows, not the database.
SQLITE_BATCH_SECONDS = 0.1
SQLITE_PAUSE_SECONDS = 0.005
# Printed slips stay listed this long; sent or failed notices too, or while their hold waits.
FINISHED_KEPT = dt.timedelta(days=1)
# Past this share of its code space a branch should raise code_length while room is left: each
# new code takes more draws, and what is left runs out the faster the busier the branch.
CROWDED_SHARE = 0.7
ERASE_CHECKPOINT_WAIT_MS = 250  # a desk request's longest wait for readers, folding an erasure
ENTRY_COLUMNS = (Hold.code, Hold.branch, Hold.pickup_by, Hold.mode, Hold.move_to_desk)


@dataclass(frozen=True)
class HoldRequest:
    """A checked request to make a hold ready. The patron is already a pseudonym."""

    branch: BranchSettings
    item: str
    patron: str
    due: dt.date
    contacts: dict[str, str]
    title: str | None = None
    # (field, pseudonym the field's value would have as a card) for the item barcode and a
    # mobile number: a known patron's means a card was scanned into the wrong field. Used for
    # that check only, never stored.
    misplaced: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class BatchOutcome:
    """What became of one request of a batch: a new hold, a skipped one, or an error."""

    entry: ShelfEntry | None = None
    skipped: bool = False
    error: str | None = None


@dataclass(frozen=True)
class PatronView:
    """What the library holds about one patron: the pickup choice and the active holds' codes."""

    preference: PickupMode
    chosen: bool  # True when the patron's own choice is stored (it differs from the default)
    holds: list[ShelfEntry]

    def as_dict(self) -> dict[str, Any]:
        return {
            "preference": self.preference.value,
            "chosen": self.chosen,
            "holds": [entry.as_dict() for entry in self.holds],
        }


class SlipState(StrEnum):
    NONE = "none"
    QUEUED = "queued"  # not tried yet
    RETRYING = "retrying"  # the printer failed; tried again with backoff
    PRINTED = "printed"
    DROPPED = "dropped"  # the hold ended before it printed


@dataclass(frozen=True)
class SlipStatus:
    """How the newest slip of a hold is doing; the desk and the API put it in their words."""

    state: SlipState
    attempts: int = 0
    error: str | None = None  # the printer's last error, for staff (never patron data)

    @property
    def settled(self) -> bool:
        """Nothing will change by itself any more (worth no further polling)."""
        return self.state in (SlipState.PRINTED, SlipState.DROPPED, SlipState.NONE)


@dataclass(frozen=True)
class PurgeReport:
    unlinked_holds: int
    freed_codes: int


@dataclass(frozen=True)
class DayCounts:
    day: dt.date
    branch: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # event -> mode -> n

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "branch": self.branch, **self.counts}


@dataclass(frozen=True)
class BranchUsage:
    branch: str
    active_holds: int
    codes_in_use: int  # active plus resting (ended less than 30 days ago)
    code_capacity: int  # about how many codes the branch's code length offers

    @property
    def share(self) -> float:
        """How full the code space is, 0..1 (more only if code_length was lowered)."""
        return self.codes_in_use / self.code_capacity if self.code_capacity else 1.0

    @property
    def crowded(self) -> bool:
        return self.share > CROWDED_SHARE

    def as_dict(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "active_holds": self.active_holds,
            "codes_in_use": self.codes_in_use,
            "code_capacity": self.code_capacity,
        }


CARD_IN_THE_WRONG_FIELD = {
    "item_barcode": "this is a patron's card, not an item barcode: scan the item",
    "sms": "this is a patron's card, not a mobile number",
}


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


class HoldService:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        clock: Callable[[], dt.datetime] | None = None,
        randbelow: Callable[[int], int] = secrets.randbelow,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._reads = read_sessions(sessions)  # lookups and lists: no write lock on SQLite
        self._clock = clock or settings.now
        self._randbelow = randbelow  # replaceable only so tests can force code collisions
        self._pseudonym = Pseudonymizer(settings.pseudonym_key.encode("utf-8"))
        self._codecs = {
            branch.id: ShelfCodec(settings.hashids_salt, branch.code_length)
            for branch in settings.branches.values()
        }

    @classmethod
    def open(
        cls, settings: Settings, clock: Callable[[], dt.datetime] | None = None
    ) -> HoldService:
        engine = database.make_engine(settings.database_url)
        database.check_schema(engine)
        return cls(settings, database.session_factory(engine), clock)

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self._sessions

    @property
    def engine(self) -> Engine:
        bind = self._sessions.kw["bind"]
        assert isinstance(bind, Engine)
        return bind

    @property
    def clock(self) -> Callable[[], dt.datetime]:
        return self._clock

    def today(self) -> dt.date:
        """The library's date now."""
        return self._clock().date()

    # -- making holds ready -------------------------------------------------------------------

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
        today = self._clock().date()
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

    def ready_request(self, request: HoldRequest) -> ShelfEntry:
        """Make a checked request ready, in one transaction."""
        now = self._clock()
        with self._sessions.begin() as session:
            entry = self._ready_in(session, request, now)
            bump(session, now.date(), entry.branch, HoldStatus.READY.value, entry.mode.value)
            return entry

    def ready_many(
        self, requests: Sequence[HoldRequest], *, atomic: bool = False, dry_run: bool = False
    ) -> list[BatchOutcome]:
        """Make many holds ready (a report from the ILS). An item already active at the same
        branch is skipped, so a report can be imported again and again. A row that fails rolls
        back alone; with ``atomic``, any failure rolls back every row; ``dry_run`` rolls back
        all at the end. Those two need one transaction, which on SQLite holds the write lock
        (every other writer waits) for the whole import; otherwise rows are committed in
        batches, on SQLite short ones with a pause between them."""
        outcomes: list[BatchOutcome] = []
        now = self._clock()
        whole = atomic or dry_run
        sliced = not whole and self.engine.dialect.name == "sqlite"
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
                failed = any(outcome.error for outcome in outcomes)
                if dry_run or (atomic and failed):
                    transaction.rollback()
                    continue
                transaction.commit()
            if sum(made.values()) >= REFRESH_AFTER_ROWS:
                database.refresh_statistics(self.engine, BULK_TABLES)
        return outcomes

    def _ready_batch(
        self,
        session: Session,
        batch: Sequence[HoldRequest],
        now: dt.datetime,
        outcomes: list[BatchOutcome],
        sliced: bool,
    ) -> Counter[tuple[str, str]]:
        """Make the batch's holds ready in ``session``, appending to ``outcomes``; a ``sliced``
        batch stops short after SQLITE_BATCH_SECONDS. Returns the holds made per branch and
        mode."""
        until = None
        if sliced:
            session.connection()  # BEGIN IMMEDIATE: the write lock is held from here
            until = time.monotonic() + SQLITE_BATCH_SECONDS
        made: Counter[tuple[str, str]] = Counter()
        for request in batch:
            outcome = self._ready_one_of_many(session, request, now)
            outcomes.append(outcome)
            if outcome.entry is not None and not outcome.skipped:
                made[outcome.entry.branch, outcome.entry.mode.value] += 1
            if until is not None and time.monotonic() >= until:
                break
        return made

    def _ready_one_of_many(
        self, session: Session, request: HoldRequest, now: dt.datetime
    ) -> BatchOutcome:
        try:
            repeated = self._repeat_of(session, request)
        except Conflict as exc:  # another patron's hold, or another branch's: said, not skipped
            return BatchOutcome(error=str(exc))
        if repeated is not None:
            return BatchOutcome(entry=repeated, skipped=True)
        try:
            with session.begin_nested():
                return BatchOutcome(entry=self._ready_in(session, request, now, checked=True))
        except HoldshelfError as exc:
            return BatchOutcome(error=str(exc))

    def _ready_in(
        self, session: Session, request: HoldRequest, now: dt.datetime, *, checked: bool = False
    ) -> ShelfEntry:
        """The hold, its code, slip and notices; the caller counts it (see ready_many), and
        may have ``checked`` already that the item has no active hold."""
        branch = request.branch
        for field_name, pseudonym in request.misplaced:
            if self._known_patron(session, pseudonym):
                raise InvalidInput(CARD_IN_THE_WRONG_FIELD[field_name], field=field_name)
        active = None if checked else self._active_hold_of(session, request.item)
        if active is not None:
            raise already_active(active)
        preference = session.get(PatronPreference, request.patron)
        mode = mode_for(
            PickupMode(preference.mode) if preference else None, self.settings.default_pickup
        )
        code = self._claim_code(session, branch)
        hold = Hold(
            branch=branch.id,
            code=code.compact,
            item_barcode=request.item,
            patron=request.patron,
            mode=mode.value,
            status=HoldStatus.READY.value,
            pickup_by=request.due,
            ready_at=stored_time(now),
            move_to_desk=False,
        )
        session.add(hold)
        try:  # the caller's transaction (or a batch row's savepoint) is rolled back with it
            session.flush()
        except IntegrityError:  # the same item, trapped by a concurrent writer
            raise Conflict("this item already has an active hold") from None
        entry = self._entry(hold)
        self._queue_slip(session, entry, "slip", now, item=request.item, title=request.title)
        self._queue_notices(session, entry, request.contacts, now, request.title)
        log.info("hold %s ready at %s (%s)", hold.id, branch.id, mode.value)
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

    def _queue_notices(
        self,
        session: Session,
        entry: ShelfEntry,
        contacts: dict[str, str],
        now: dt.datetime,
        title: str | None,
    ) -> None:
        if not contacts:
            return
        sealer = Sealer(self.settings.data_key)
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
                    created_at=stored_time(now),
                    next_attempt_at=stored_time(now),
                )
            )

    def _queue_slip(
        self,
        session: Session,
        entry: ShelfEntry,
        kind: str,
        now: dt.datetime,
        *,
        item: str | None,
        title: str | None = None,
    ) -> None:
        slip = self._slip_for(entry, item, title)
        session.add(
            PrintJob(
                branch=entry.branch,
                code=entry.code.compact,
                kind=kind,
                payload=json.dumps(slip.payload()),
                status=Delivery.QUEUED,
                attempts=0,
                created_at=stored_time(now),
                next_attempt_at=stored_time(now),
            )
        )

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
        holds = select(Hold.id).where(
            Hold.patron == pseudonym, Hold.status == HoldStatus.READY.value
        )
        chosen = select(PatronPreference.patron).where(PatronPreference.patron == pseudonym)
        return bool(session.scalar(select(or_(holds.exists(), chosen.exists()))))

    @staticmethod
    def _active_hold_of(session: Session, item: str) -> Hold | None:
        return session.scalar(
            select(Hold).where(Hold.item_barcode == item, Hold.status == HoldStatus.READY.value)
        )

    def _claim_code(self, session: Session, branch: BranchSettings) -> ShelfCode:
        """A random code no active or resting hold of the branch has, claimed in the database.

        The claim's primary key settles races between writers (processes or app servers): the
        loser's insert does nothing and it simply takes another candidate."""
        codec = self._codecs[branch.id]
        for round_ in range(CLAIM_ROUNDS):
            batch = min(MOST_CANDIDATES, FIRST_CANDIDATES * 2**round_)
            candidates = {codec.draw(self._randbelow) for _ in range(batch)}
            taken = set(
                session.scalars(
                    select(ShelfCodeClaim.code).where(
                        ShelfCodeClaim.branch == branch.id,
                        ShelfCodeClaim.code.in_([code.compact for code in candidates]),
                    )
                )
            )
            for code in candidates:
                if code.compact in taken:
                    continue
                claim = database.dialect_insert(session, ShelfCodeClaim).values(
                    branch=branch.id, code=code.compact
                )
                # Another writer may claim it between our look and our insert: its row wins
                # and we take the next candidate (no savepoint: an import makes thousands).
                claimed = claim.on_conflict_do_nothing().returning(ShelfCodeClaim.code)
                if session.execute(claimed).scalar() is not None:
                    return code
        raise CodesExhausted(
            f"branch {branch.id} has no free shelf code left: raise its code_length"
        )

    # -- ending holds -------------------------------------------------------------------------

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
            due = session.scalars(
                select(Hold)
                .where(Hold.status == HoldStatus.READY.value, Hold.pickup_by < on)
                .order_by(Hold.branch, Hold.code)
                .with_for_update()
            ).all()
            pulled = [self._end(session, hold, HoldStatus.EXPIRED, now) for hold in due]
        if pulled:
            self._fold_erased()
        log.info("expired %d holds", len(pulled))
        return pulled

    def overdue(self, branch_id: str, on: dt.date | None = None) -> list[ShelfEntry]:
        """Holds of a branch past their pickup-by date, in shelving order: what to pull (the
        open shelf's first, then the desk's)."""
        on = on or self._clock().date()
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
        hold.ended_at = stored_time(now)
        entry = self._entry(hold)
        session.execute(
            update(ShelfCodeClaim)
            .where(ShelfCodeClaim.branch == hold.branch, ShelfCodeClaim.code == hold.code)
            .values(released_at=stored_time(now))
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
                finished_at=stored_time(now),
                last_error="the hold ended before it was sent",
            )
        )
        if self.settings.retention_days == 0:
            session.delete(hold)  # the link to the patron goes with the row, at once
        session.flush()
        return entry

    # -- finding holds ------------------------------------------------------------------------

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

    def is_a_card(self, scan: str, branch_id: str | None = None) -> bool:
        """Whether a scan is a patron's card, by the rules or as a known patron's: the desk
        never puts such a value back into a page."""
        try:
            value = clean_barcode(scan)
        except InvalidInput:
            return False
        with self._reads() as session:
            return self._is_a_card(session, value, branch_id)

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
        )

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

    def _repeat_of(self, session: Session, request: HoldRequest) -> ShelfEntry | None:
        """One rule for the desk, the CLI, the API and imports: a ready for an item whose hold
        is active for the same patron at the same branch is that hold again, not a new one;
        for another patron or branch it is a conflict (a re-trap the ILS must end first)."""
        active = self._active_hold_of(session, request.item)
        if active is None:
            return None
        if active.branch != request.branch.id or active.patron != request.patron:
            raise already_active(active, another_patron=active.patron != request.patron)
        return self._entry(active)

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

    def print_status(self, code: ShelfCode, branch_id: str) -> SlipStatus:
        """How the newest slip of a hold is doing."""
        with self._reads() as session:
            job = session.scalar(
                select(PrintJob)
                .where(PrintJob.branch == branch_id, PrintJob.code == code.compact)
                .order_by(PrintJob.id.desc())
                .limit(1)
            )
        if job is None:
            return SlipStatus(SlipState.NONE)
        if job.status == Delivery.SENT:
            return SlipStatus(SlipState.PRINTED, job.attempts)
        if job.status == Delivery.DROPPED:
            return SlipStatus(SlipState.DROPPED, job.attempts)
        if job.last_error:
            return SlipStatus(SlipState.RETRYING, job.attempts, job.last_error)
        return SlipStatus(SlipState.QUEUED, job.attempts)

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

    # -- patrons ------------------------------------------------------------------------------

    def pseudonym(self, card: str, branch_id: str | None = None) -> str:
        """The patron's pseudonym: how the web desk remembers a patron without the card. The
        card must pass the branch's card rule (the library's, without a branch)."""
        return self._pseudonym(checked("patron_card", self._rules(branch_id).card, card))

    def _rules(self, branch_id: str | None) -> BarcodeRules:
        """The branch's barcode rules; the library's without a branch."""
        return self.settings.branch(branch_id).barcodes if branch_id else self.settings.barcodes

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

    # -- retention and numbers ----------------------------------------------------------------

    def purge(self) -> PurgeReport:
        """Delete ended holds' links once their retention is over and free codes that have
        rested 30 days; then fold SQLite's WAL so no old page image keeps a deleted link."""
        now = stored_time(self._clock())
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


def _group_days(rows: Iterable[DailyCount]) -> list[DayCounts]:
    days: dict[tuple[dt.date, str], DayCounts] = {}
    for row in rows:
        day = days.setdefault((row.day, row.branch), DayCounts(row.day, row.branch))
        day.counts.setdefault(row.event, {})[row.mode] = row.count
    return sorted(days.values(), key=lambda d: (-d.day.toordinal(), d.branch))
