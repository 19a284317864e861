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

from sqlalchemy import Select, select
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
        sent is finished and recorded, and no other is taken."""
        report = PassReport()
        self.before_pass(report)
        tried: set[int] = set()
        passed_over: set[int] = set()  # tried, failed, yet due again (see _claim)
        draining = False
        while not (stop and stop.is_set()):
            row = self._claim(ignore_backoff, report, tried, passed_over, look_first=not draining)
            if row is None:
                break
            draining = True
            tried.add(row.id)
            self.delivering = row.id
            try:
                outcome = self.deliver(row)
            except Exception as exc:  # a bug must not stop the queue; the row is kept
                # The type and the place only: an exception's message may quote an address.
                log.error("%s %s: delivery failed: %s", self.noun, row.id, unexpected(exc))
                outcome = Outcome(f"internal error ({type(exc).__name__})")
            try:
                self._record(row.id, outcome)
            finally:
                self.delivering = None
            if outcome.delivered:
                report.sent += 1
            elif outcome.permanent:
                report.given_up += 1
            else:
                report.failed[self.route(row)] = outcome.error or ""
        return report

    def _claim(
        self,
        ignore_backoff: bool,
        report: PassReport,
        tried: set[int],
        passed_over: set[int],
        *,
        look_first: bool,
    ) -> Any | None:
        """Lease the first due row in claim order (claim_order), dropping rows of holds that
        have ended on the way. ``look_first``: ask a read session whether anything is due
        before taking the write lock, as most passes find nothing; a pass draining a queue
        skips it, where it would cost a transaction per row."""
        model = self.model
        now = self._clock()
        while True:
            query = self._due(now, ignore_backoff, report, passed_over)
            if look_first:
                with self._reads() as session:
                    if session.scalar(query.with_only_columns(model.id).limit(1)) is None:
                        return None
            with self._sessions.begin() as session:
                row = session.scalar(
                    query.order_by(*claim_order(model)).limit(1).with_for_update(skip_locked=True)
                )
                if row is None:
                    return None
                # A row tried in this pass is finished, leased, or on a route skipped since,
                # unless its route names nothing to skip (a branch no longer configured, tried
                # again by `worker --once`): then it is passed over by id for the rest of it.
                if row.id in tried:
                    passed_over.add(row.id)
                    continue
                if not self._hold_active(session, row):
                    self._close(row, Delivery.DROPPED, "the hold ended before it was sent", now)
                    report.dropped += 1
                    continue
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
    def _hold_active(session: Session, row: Any) -> bool:
        found = session.scalar(
            select(Hold.id).where(
                Hold.branch == row.branch,
                Hold.code == row.code,
                Hold.status == HoldStatus.READY.value,
            )
        )
        return found is not None

    def _close(
        self, row: OutboxMixin, status: Delivery, error: str | None, now: dt.datetime
    ) -> None:
        row.status, row.last_error, row.finished_at, row.leased_until = status, error, now, None
        self.finished(row, Outcome(error, permanent=status != Delivery.SENT))

    def _record(self, row_id: int, outcome: Outcome) -> None:
        """Record how the delivery went, trying again after a transient database error (SQLite
        locked past its busy timeout, a PostgreSQL serialization failure or dropped connection):
        left to the lease, a printed slip would be printed again."""
        now = self._clock()
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                self._record_once(row_id, outcome, now)
                return
            except DBAPIError as exc:
                if attempt == RECORD_ATTEMPTS or not transient(exc):
                    raise
                # The type only: a driver's message may quote the statement's parameters.
                log.warning(
                    "%s %s: recording the outcome failed (%s), trying again",
                    self.noun,
                    row_id,
                    type(exc.orig).__name__,
                )
            time.sleep(RECORD_RETRY_SECONDS * 2 ** (attempt - 1))

    def _record_once(self, row_id: int, outcome: Outcome, now: dt.datetime) -> None:
        with self._sessions.begin() as session:
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
