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

from sqlalchemy import ColumnElement, Connection, Row, Select, bindparam, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from holdshelf.clock import Clock
from holdshelf.domain.holds import HoldStatus
from holdshelf.errors import unexpected
from holdshelf.settings import Settings
from holdshelf.storage.database import read_sessions, reading, transient
from holdshelf.storage.models import QUEUED, Delivery, Hold

log = logging.getLogger(__name__)

FIRST_RETRY = dt.timedelta(seconds=5)
LONGEST_RETRY = dt.timedelta(minutes=5)
LEASE = dt.timedelta(minutes=2)
JITTER = 0.2  # each delay is drawn from ±20% around its step
# Recording an outcome is tried this often, waiting 0.25 s, 0.5 s, 1 s ... between tries: a slip
# printed but not recorded would print again once its lease runs out.
RECORD_ATTEMPTS = 5
RECORD_RETRY_SECONDS = 0.25
# Claim statements kept per worker, one per set of routes skipped (see OutboxWorker._due).
KEPT_CLAIMS = 64


def claim_order(model: Any) -> tuple[Any, ...]:
    """The order rows are claimed in, as the claim index (models.claim_index) keeps it: desk
    rows before an import's (Priority), then the oldest first. ``model``: an outbox model or
    its table's columns."""
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
    attempts: int  # counting this one: how long a retry waits
    outcome: Outcome


CLOSING_COLUMNS = ("status", "last_error", "finished_at", "leased_until")


def closing(status: Delivery, error: str | None, now: dt.datetime) -> dict[str, Any]:
    """The values that end an outbox row (sent, failed for good, dropped)."""
    return dict(zip(CLOSING_COLUMNS, (status, error, now, None), strict=True))


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
    # The columns a row forgets (sets to NULL) once it is finished (sent, failed for good,
    # dropped): the print worker's phase, a notice's sealed contact.
    erased_when_finished: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        clock: Clock,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._reads = read_sessions(sessions)  # lookups and lists: no write lock on SQLite
        # The claims, leases and outcomes are Core statements, built once, on connections: the
        # ORM's session, identity map and flush cost a worker more than the database did.
        self._engine = sessions.kw["bind"]
        self._reading = reading(self._engine)
        self._claims: dict[tuple[Any, ...], Claim] = {}
        self._statements = _Statements(self.model.__table__, self.erased_when_finished)
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
                unwritten = Unwritten(row.id, row.attempts, self._attempt(row))
                if not (unwritten.outcome.delivered or unwritten.outcome.permanent):
                    # the next claim, in the transaction that writes this, skips the route
                    report.failed[self.route(row)] = unwritten.outcome.error or ""
        finally:
            try:
                if unwritten is not None:
                    self._record(unwritten.row_id, unwritten.outcome, unwritten.attempts)
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
        while True:
            now = self._clock()
            claim, params = self._due(ignore_backoff, report, passed_over), {"now": now}
            if look_first and writing is None:
                with self._reading.connect() as connection:
                    if connection.execute(claim.look, params).first() is None:
                        return None
            try:
                with self._engine.begin() as connection:
                    if writing is not None:
                        self._write_outcome(connection, writing, now)
                    found = self._lease_first(
                        connection, claim.first, params, report, tried, passed_over, now
                    )
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
        connection: Connection,
        query: Select[Any],
        params: dict[str, Any],
        report: PassReport,
        tried: set[int],
        passed_over: set[int],
        now: dt.datetime,
    ) -> Row[Any] | object | None:
        """The first due row, leased (its ``attempts`` counting this one); None when there is
        none; PASSED when the row found was passed over or dropped (the caller looks again, in
        a new transaction). Whether its hold is still ready comes with the row, in the claim's
        one SELECT."""
        row = connection.execute(query, params).first()
        if row is None:
            return None
        # A row tried in this pass is finished, leased, or on a route skipped since, unless
        # its route names nothing to skip (a branch no longer configured, tried again by
        # `worker --once`): then it is passed over by id for the rest of it.
        if row.id in tried:
            passed_over.add(row.id)
            return PASSED
        if not row.hold_active:
            dropped = closing(Delivery.DROPPED, "the hold ended before it was sent", now)
            connection.execute(self._statements.close, {"row_id": row.id, **new(dropped)})
            report.dropped += 1
            return PASSED
        connection.execute(self._statements.lease, {"row_id": row.id, "until": now + LEASE})
        return row

    def _due(self, ignore_backoff: bool, report: PassReport, passed_over: set[int]) -> Claim:
        """The claim of the rows to send now (at the parameter ``now``): queued, not leased,
        not along a route that failed in this pass, not ``passed_over``, and (unless
        ``ignore_backoff``) past their retry time. The rows tried in this pass need no list
        (one that grew by one per row slowed every claim): they are finished, leased, or on a
        failed route; ``passed_over`` stays empty but for the rare row whose route cannot be
        skipped. Kept once built: building and keying a statement cost more than running it."""
        key = (ignore_backoff, frozenset(passed_over), frozenset(report.failed))
        claim = self._claims.get(key)
        if claim is None:
            due = self._statements.due(ignore_backoff)
            if passed_over:
                due = due.where(self.model.id.not_in(passed_over))
            if report.failed:
                due = self.skip_routes(due, set(report.failed))
            if len(self._claims) >= KEPT_CLAIMS:
                self._claims.clear()
            claim = self._claims[key] = self._statements.claim(due)
        return claim

    @staticmethod
    def _hold_active(model: Any) -> ColumnElement[bool]:
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

    def _record(self, row_id: int, outcome: Outcome, attempts: int | None = None) -> None:
        """Record how the delivery went, trying again after a transient database error (SQLite
        locked past its busy timeout, a PostgreSQL serialization failure or dropped connection):
        left to the lease, a printed slip would be printed again. ``attempts``: the row's,
        counting this one, if known (read otherwise, should a retry need it)."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                with self._engine.begin() as connection:
                    tries = attempts
                    if tries is None and not (outcome.delivered or outcome.permanent):
                        tries = connection.scalar(self._statements.attempts, {"row_id": row_id})
                    unwritten = Unwritten(row_id, tries or 0, outcome)
                    self._write_outcome(connection, unwritten, self._clock())
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
        self._record(writing.row_id, writing.outcome, writing.attempts)

    def _retrying(self, row_id: int, exc: DBAPIError) -> None:
        # The type only: a driver's message may quote the statement's parameters.
        log.warning(
            "%s %s: recording the outcome failed (%s), trying again",
            self.noun,
            row_id,
            type(exc.orig).__name__,
        )

    def _write_outcome(
        self, connection: Connection, unwritten: Unwritten, now: dt.datetime
    ) -> None:
        """Write ``unwritten`` (nothing if its row is gone)."""
        outcome, row = unwritten.outcome, {"row_id": unwritten.row_id}
        if outcome.delivered or outcome.permanent:
            status = Delivery.SENT if outcome.delivered else Delivery.FAILED
            error = None if outcome.delivered else (outcome.error or "")[:300]
            connection.execute(self._statements.close, {**row, **new(closing(status, error, now))})
        else:
            retry = {
                "leased_until": now + LEASE if outcome.hold else None,
                "last_error": (outcome.error or "")[:300],
                "next_attempt_at": now + retry_delay(unwritten.attempts),
            }
            connection.execute(self._statements.retry, {**row, **new(retry)})


class _Statements:
    """The Core statements of one outbox table's worker, built once."""

    def __init__(self, table: Any, erased_when_finished: tuple[str, ...]) -> None:
        self.table = table
        by_id = table.c.id == bindparam("row_id")
        self.lease = (
            update(table)
            .where(by_id)
            .values(attempts=table.c.attempts + 1, leased_until=bindparam("until"))
        )
        # Parameters named apart from the columns they set, as SQLAlchemy requires.
        erased = dict.fromkeys(erased_when_finished)
        self.close = update(table).where(by_id).values(**_set(CLOSING_COLUMNS), **erased)
        retried = ("leased_until", "last_error", "next_attempt_at")
        self.retry = update(table).where(by_id).values(**_set(retried))
        self.attempts = select(table.c.attempts).where(by_id)

    def due(self, ignore_backoff: bool) -> Select[Any]:
        """The rows due at the parameter ``now``, each with its ``attempts`` counting the
        lease about to be taken."""
        table, now = self.table, bindparam("now")
        columns = [
            (column + 1).label("attempts") if column.name == "attempts" else column
            for column in table.c
        ]
        # QUEUED as the claim index says it, so that the index serves the claim
        query = select(*columns).where(
            QUEUED, table.c.leased_until.is_(None) | (table.c.leased_until < now)
        )
        if not ignore_backoff:
            query = query.where(table.c.next_attempt_at <= now)
        return query

    def claim(self, due: Select[Any]) -> Claim:
        """The first of the rows ``due``, with whether its hold is still ready, locked (passing
        over rows another worker locked); and the look whether there is one, locking none."""
        table = self.table
        first = due.add_columns(OutboxWorker._hold_active(table.c).label("hold_active"))
        first = first.order_by(*claim_order(table.c)).limit(1)
        return Claim(
            first.with_for_update(skip_locked=True, of=table),
            due.with_only_columns(table.c.id).limit(1),
        )


def _set(columns: tuple[str, ...]) -> dict[str, Any]:
    """Each of ``columns`` set to its parameter (see new)."""
    return {name: bindparam(f"new_{name}") for name in columns}


def new(values: dict[str, Any]) -> dict[str, Any]:
    """The parameters of the statements that set ``values`` (see _set)."""
    return {f"new_{name}": value for name, value in values.items()}


@dataclass(frozen=True)
class Claim:
    first: Select[Any]
    look: Select[Any]


def count(report: PassReport, outcome: Outcome) -> None:
    """Count an outcome once it is written."""
    if outcome.delivered:
        report.sent += 1
    elif outcome.permanent:
        report.given_up += 1
