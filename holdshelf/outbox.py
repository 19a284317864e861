"""Delivering what leaves the machine (slips, notices) once, off the request path.

Rows are written in the transaction that makes the hold ready (see OutboxMixin), which wakes
the workers (holdshelf.storage.wakeup). A worker leases one row at a time, a desk row before an
import's and then the oldest (claim_order), so several workers (several app servers) never
send the same row; a worker that crashes mid-delivery loses only its lease. A temporary
failure keeps the row queued with its attempts and last error, retried with backoff; a
permanent one ends it. A row whose hold has ended meanwhile is dropped, not sent.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from holdshelf.clock import Clock
from holdshelf.domain.holds import HoldStatus
from holdshelf.errors import unexpected
from holdshelf.settings import Settings
from holdshelf.storage.database import read_sessions, transient
from holdshelf.storage.models import QUEUED, Delivery, Hold, OutboxMixin

log = logging.getLogger(__name__)

FIRST_RETRY = dt.timedelta(seconds=5)
LONGEST_RETRY = dt.timedelta(minutes=5)
LEASE = dt.timedelta(minutes=2)
JITTER = 0.2  # each delay is drawn from ±20% around its step
# Recording an outcome is tried this often, waiting 0.25 s, 0.5 s, 1 s ... between tries: a slip
# printed but not recorded would print again once its lease runs out.
RECORD_ATTEMPTS = 5
RECORD_RETRY_SECONDS = 0.25


def claim_order(model: type[Any]) -> tuple[Any, ...]:
    """The order rows are claimed in, as the claim index (models.claim_index) keeps it: desk
    rows before an import's (Priority), then the oldest first."""
    return (model.priority, model.id)


def retry_delay(attempts: int, rng: random.Random | None = None) -> dt.timedelta:
    """5 s, 10 s, 20 s ... up to 5 minutes, each ±20%: a printer back from lunch prints within
    minutes. The jitter spreads the retries of rows that failed together (a branch's printer
    or the mail server coming back) instead of sending them all in the same second."""
    # The exponent is capped: 2 ** 44 times 5 s no longer fits a timedelta, and a printer off
    # for a few hours reaches that many attempts.
    step = min(LONGEST_RETRY, FIRST_RETRY * 2 ** min(max(0, attempts - 1), 16))
    return step * (rng or random).uniform(1 - JITTER, 1 + JITTER)


@dataclass(frozen=True)
class Outcome:
    """How one delivery went. ``error`` is for staff and names no patron."""

    error: str | None = None
    permanent: bool = False
    # Not finished, and not to be taken up by anyone else either: this worker still follows it
    # (a printer holding the slip on an open connection) and keeps renewing the lease.
    hold: bool = False

    @property
    def delivered(self) -> bool:
        return self.error is None


DELIVERED = Outcome()
PASSED = object()  # a claim found a row to pass over or drop: look again


@dataclass(frozen=True)
class Unwritten:
    """A row's outcome not written yet: it goes with the next claim (see run_once)."""

    row_id: int
    outcome: Outcome


@dataclass
class PassReport:
    sent: int = 0
    dropped: int = 0
    given_up: int = 0  # permanent failures
    failed: dict[str, str] = field(default_factory=dict)  # route -> last temporary error


class OutboxWorker(ABC):
    """Sends the rows of one outbox table. Subclasses say how to deliver a row and along which
    route (a printer, a gateway): after a temporary failure, a route is not tried again in
    the same pass."""

    model: ClassVar[type[Any]]
    noun: ClassVar[str] = "item"

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        clock: Clock,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._reads = read_sessions(sessions)  # lookups and lists: no write lock on SQLite
        self._clock = clock
        self.delivering: int | None = None  # the row being sent now, if any

    @abstractmethod
    def route(self, row: Any) -> str:
        """Where the row goes (the printer's name, the channel)."""

    @abstractmethod
    def skip_routes(self, query: Select[Any], routes: set[str]) -> Select[Any]:
        """``query`` without the rows that would go along ``routes``."""

    @abstractmethod
    def deliver(self, row: Any) -> Outcome:
        """Send the row; never raises for a delivery problem."""

    def finished(self, row: Any, outcome: Outcome) -> None:  # noqa: B027 (an optional hook)
        """Called in the transaction that records a final outcome (to erase secrets)."""

    def before_pass(self, report: PassReport) -> None:  # noqa: B027 (an optional hook)
        """Called at the start of each pass, before any row is claimed: rows this worker
        still follows are settled here, and routes that must wait go into ``report.failed``."""

    def run_once(
        self, *, ignore_backoff: bool = False, stop: threading.Event | None = None
    ) -> PassReport:
        """Deliver every due row once; ``ignore_backoff`` also tries rows still waiting for
        their retry time (an operator's `worker --once`). Once ``stop`` is set, the row being
        sent is finished and recorded, and no other is taken.

        A row's outcome is written in the transaction that claims the next row (one commit
        per row while draining a queue, not two); the last one, with the claim that finds
        nothing, or on its own once ``stop`` is set: a pass never ends with one unwritten."""
        report = PassReport()
        self.before_pass(report)
        tried: set[int] = set()
        passed_over: set[int] = set()  # tried, failed, yet due again (see _claim)
        unwritten: Unwritten | None = None
        try:
            while not (stop and stop.is_set()):
                writing, unwritten = unwritten, None  # _claim writes it, or raises trying
                row = self._claim(
                    ignore_backoff,
                    report,
                    tried,
                    passed_over,
                    look_first=not tried,
                    writing=writing,
                )
                self.delivering = None if row is None else row.id
                if row is None:
                    break
                tried.add(row.id)
                unwritten = Unwritten(row.id, self._attempt(row))
                if not (unwritten.outcome.delivered or unwritten.outcome.permanent):
                    # the next claim, in the transaction that writes this, skips the route
                    report.failed[self.route(row)] = unwritten.outcome.error or ""
        finally:
            try:
                if unwritten is not None:
                    self._record(unwritten.row_id, unwritten.outcome)
                    count(report, unwritten.outcome)
            finally:
                self.delivering = None
        return report

    def _attempt(self, row: Any) -> Outcome:
        """Deliver ``row``, whatever happens: a bug must not stop the queue; the row is kept."""
        try:
            return self.deliver(row)
        except Exception as exc:
            # The type and the place only: an exception's message may quote an address.
            log.error("%s %s: delivery failed: %s", self.noun, row.id, unexpected(exc))
            return Outcome(f"internal error ({type(exc).__name__})")

    def _claim(
        self,
        ignore_backoff: bool,
        report: PassReport,
        tried: set[int],
        passed_over: set[int],
        *,
        look_first: bool,
        writing: Unwritten | None = None,
    ) -> Any | None:
        """Lease the first due row in claim order (claim_order), dropping rows of holds that
        have ended on the way, and write ``writing`` (the previous row's outcome) in the same
        transaction. Should that transaction fail, the outcome is written on its own (tried
        again as _record does) before the claim is: an outcome is never lost to a claim.
        ``look_first``: ask a read session whether anything is due before taking the write
        lock, as most passes find nothing; a pass draining a queue skips it, where it would
        cost a transaction per row."""
        model = self.model
        while True:
            now = self._clock()
            query = self._due(now, ignore_backoff, report, passed_over)
            if look_first and writing is None:
                with self._reads() as session:
                    if session.scalar(query.with_only_columns(model.id).limit(1)) is None:
                        return None
            try:
                with self._sessions.begin() as session:
                    if writing is not None:
                        self._write_outcome(session, writing.row_id, writing.outcome, now)
                    found = self._lease_first(session, query, report, tried, passed_over, now)
            except Exception as exc:
                if writing is None:
                    raise
                self._write_alone(writing, exc)
                count(report, writing.outcome)
                writing = None
                continue
            if writing is not None:
                count(report, writing.outcome)
                writing = None
            if found is not PASSED:
                return found

    def _lease_first(
        self,
        session: Session,
        query: Select[Any],
        report: PassReport,
        tried: set[int],
        passed_over: set[int],
        now: dt.datetime,
    ) -> Any:
        """The first due row, leased; None when there is none; PASSED when the row found was
        passed over or dropped (the caller looks again, in a new transaction). Whether its
        hold is still ready comes with the row, in the claim's one SELECT."""
        model = self.model
        found = session.execute(
            query.add_columns(self._hold_active(model).label("hold_active"))
            .order_by(*claim_order(model))
            .limit(1)
            .with_for_update(skip_locked=True, of=model)
        ).first()
        if found is None:
            return None
        row, active = found
        # A row tried in this pass is finished, leased, or on a route skipped since, unless
        # its route names nothing to skip (a branch no longer configured, tried again by
        # `worker --once`): then it is passed over by id for the rest of it.
        if row.id in tried:
            passed_over.add(row.id)
            return PASSED
        if not active:
            self._close(row, Delivery.DROPPED, "the hold ended before it was sent", now)
            report.dropped += 1
            return PASSED
        row.attempts += 1
        row.leased_until = now + LEASE
        return row  # detached after the commit, still readable (expire_on_commit off)

    def _due(
        self, now: dt.datetime, ignore_backoff: bool, report: PassReport, passed_over: set[int]
    ) -> Select[Any]:
        """The rows to send now: queued, not leased, not along a route that failed in this
        pass, not ``passed_over``, and (unless ``ignore_backoff``) past their retry time. The
        rows tried in this pass need no list (one that grew by one per row slowed every
        claim): they are finished, leased, or on a failed route; ``passed_over`` stays empty
        but for the rare row whose route cannot be skipped."""
        model = self.model
        query = select(model).where(
            QUEUED,  # as the claim index says it, so that the index serves the claim
            (model.leased_until.is_(None)) | (model.leased_until < now),
        )
        if not ignore_backoff:
            query = query.where(model.next_attempt_at <= now)
        if passed_over:
            query = query.where(model.id.not_in(passed_over))
        if report.failed:
            query = self.skip_routes(query, set(report.failed))
        return query

    @staticmethod
    def _hold_active(model: type[Any]) -> ColumnElement[bool]:
        """Whether the row's hold is still ready, as a column of the claim. A scalar subquery,
        not EXISTS: PostgreSQL may run an EXISTS in the select list as a hash of every ready
        hold, built for each claim (over a millisecond at 3,000 holds on the shelf)."""
        hold = (
            select(Hold.id)
            .where(
                Hold.branch == model.branch,
                Hold.code == model.code,
                Hold.status == HoldStatus.READY.value,
            )
            .limit(1)
            .scalar_subquery()
        )
        return hold.is_not(None)

    def _close(
        self, row: OutboxMixin, status: Delivery, error: str | None, now: dt.datetime
    ) -> None:
        row.status, row.last_error, row.finished_at, row.leased_until = status, error, now, None
        self.finished(row, Outcome(error, permanent=status != Delivery.SENT))

    def _record(self, row_id: int, outcome: Outcome) -> None:
        """Record how the delivery went, trying again after a transient database error (SQLite
        locked past its busy timeout, a PostgreSQL serialization failure or dropped connection):
        left to the lease, a printed slip would be printed again."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                with self._sessions.begin() as session:
                    self._write_outcome(session, row_id, outcome, self._clock())
                return
            except DBAPIError as exc:
                if attempt == RECORD_ATTEMPTS or not transient(exc):
                    raise
                self._retrying(row_id, exc)
            time.sleep(RECORD_RETRY_SECONDS * 2 ** (attempt - 1))

    def _write_alone(self, writing: Unwritten, exc: Exception) -> None:
        """The outcome whose transaction with the next claim failed (``exc``), on its own."""
        if isinstance(exc, DBAPIError) and transient(exc):
            self._retrying(writing.row_id, exc)
            time.sleep(RECORD_RETRY_SECONDS)
        self._record(writing.row_id, writing.outcome)

    def _retrying(self, row_id: int, exc: DBAPIError) -> None:
        # The type only: a driver's message may quote the statement's parameters.
        log.warning(
            "%s %s: recording the outcome failed (%s), trying again",
            self.noun,
            row_id,
            type(exc.orig).__name__,
        )

    def _write_outcome(
        self, session: Session, row_id: int, outcome: Outcome, now: dt.datetime
    ) -> None:
        row = session.get(self.model, row_id)
        if row is None:
            return
        if outcome.delivered:
            self._close(row, Delivery.SENT, None, now)
        elif outcome.permanent:
            self._close(row, Delivery.FAILED, (outcome.error or "")[:300], now)
        else:
            row.leased_until = now + LEASE if outcome.hold else None
            row.last_error = (outcome.error or "")[:300]
            row.next_attempt_at = now + retry_delay(row.attempts)


def count(report: PassReport, outcome: Outcome) -> None:
    """Count an outcome once it is written."""
    if outcome.delivered:
        report.sent += 1
    elif outcome.permanent:
        report.given_up += 1
