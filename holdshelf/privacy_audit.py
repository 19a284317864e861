"""For the privacy officer: what Holdshelf holds that can touch a patron, right now, against
its retention rule; and what it holds about one patron ("what can we disclose?").

The ALA's privacy tool kit asks a library to "identify the type and nature of all records and
files containing library patron and user personally identifiable information" and to keep "a
schedule for the retention of records": Holdshelf knows exactly which of its rows these are.
Every number here is counted from the database when asked; nothing here reads or shows a
pseudonym, a sealed contact or a title, only how many there are and how old the oldest is.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from holdshelf.clock import Clock
from holdshelf.domain.holds import CODE_QUARANTINE, HoldStatus, unlink_cutoff
from holdshelf.integrations import IDEMPOTENCY_KEPT
from holdshelf.service import HoldService, PatronView
from holdshelf.settings import Settings
from holdshelf.storage.models import (
    BACKED_UP,
    PURGED,
    AuditEntry,
    Hold,
    IdempotencyRecord,
    InstanceEvent,
    Notice,
    PatronPreference,
    PrintJob,
    WebSession,
)
from holdshelf.workflow.base import HoldsBase
from holdshelf.workflow.retention import FINISHED_KEPT

log = logging.getLogger(__name__)

# The hourly purge (holdshelf.worker.HOUSEKEEPING_EVERY) deletes what falls due between two of
# its runs up to an hour late: only a record later than that is a failure.
PURGE_GRACE = dt.timedelta(hours=1, minutes=5)
UNTITLED = json.dumps({"title": None})[1:-1]  # '"title": null' in a print job's payload
DISCLOSURE_ACTION = "privacy disclosure lookup"  # the audit log's action for a disclosure
ENDED_HOLDS_UNLINKED = (
    "Holds that have ended cannot be linked to anyone: when a hold ends, its link to the "
    "patron's pseudonym is deleted and only daily counts remain."
)


@dataclass(frozen=True)
class RecordKind:
    """One kind of record that can touch a patron: how many there are now, the oldest, the
    rule that says how long they may be kept, and how many are kept past it."""

    key: str
    what: str
    count: int
    oldest: dt.datetime | None
    rule: str
    past_retention: int = 0
    note: str | None = None

    @property
    def failure(self) -> str | None:
        if not self.past_retention:
            return None
        return f"{self.past_retention} {self.what.lower()} kept past their retention"

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "what": self.what,
            "count": self.count,
            "oldest": _iso(self.oldest),
            "rule": self.rule,
            "past_retention": self.past_retention,
            "failure": self.failure,
            "note": self.note,
        }


@dataclass(frozen=True)
class ScheduleEntry:
    record: str
    kept: str
    setting: str | None  # the configuration key that sets it, when one does


@dataclass(frozen=True)
class PrivacyReport:
    at: dt.datetime
    records: list[RecordKind]
    schedule: list[ScheduleEntry]
    last_purge: dt.datetime | None
    last_backup: dt.datetime | None
    database: str  # "SQLite" | "PostgreSQL"

    @property
    def failures(self) -> list[str]:
        return [kind.failure for kind in self.records if kind.failure]

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": _iso(self.at),
            "records": [kind.as_dict() for kind in self.records],
            "failures": self.failures,
            "schedule": [asdict(entry) for entry in self.schedule],
            "last_purge": _iso(self.last_purge),
            "last_backup": _iso(self.last_backup),
            "database": self.database,
        }


@dataclass(frozen=True)
class Disclosure:
    """What Holdshelf holds about one patron: the choice and active holds (as ``patron
    show``), how many notices wait with a sealed contact for them, and ended holds' links."""

    patron: PatronView
    sealed_notices: int
    sealed_for_scan: int  # active holds the ILS registered, their contacts sealed till the scan
    ended_linked: int  # ended holds still linked (only when retention.ended_hold_days > 0)
    statement: str

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.patron.as_dict(),
            "sealed_notices": self.sealed_notices,
            "sealed_for_scan": self.sealed_for_scan,
            "ended_holds_linked": self.ended_linked,
            "statement": self.statement,
        }


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


class PrivacyAudit(HoldsBase):
    """The inventory and the disclosure lookups, over the hold service's queries."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        clock: Clock,
        service: HoldService,
    ) -> None:
        super().__init__(settings, sessions, clock)
        self._service = service  # for a patron's view, as `patron show` prints it

    # -- the inventory ----------------------------------------------------------------------

    def report(self) -> PrivacyReport:
        now = self._clock()
        with self._reads() as session:
            records = [measure(session, now) for measure in self._measures()]
            events = dict(session.execute(select(InstanceEvent.event, InstanceEvent.at)).all())
        return PrivacyReport(
            at=now,
            records=records,
            schedule=self.schedule(),
            last_purge=events.get(PURGED),
            last_backup=events.get(BACKED_UP),
            database=self._database_name(),
        )

    def _measures(self) -> list[Callable[[Session, dt.datetime], RecordKind]]:
        return [
            self._active_links,
            self._ended_links,
            self._sealed_notices,
            self._sealed_on_scan,
            self._preferences,
            self._desk_focus,
            self._audit_entries,
            self._titles_in_print_jobs,
            self._request_fingerprints,
        ]

    def _database_name(self) -> str:
        return "SQLite" if self.engine.dialect.name == "sqlite" else "PostgreSQL"

    @staticmethod
    def _count_and_oldest(
        session: Session, column: Any, *where: Any
    ) -> tuple[int, dt.datetime | None]:
        count, oldest = session.execute(select(func.count(), func.min(column)).where(*where)).one()
        return count, _aware(oldest)

    @staticmethod
    def _count(session: Session, model: Any, *where: Any) -> int:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

    def _active_links(self, session: Session, now: dt.datetime) -> RecordKind:
        active = (Hold.status == HoldStatus.READY.value, Hold.patron.is_not(None))
        count, oldest = self._count_and_oldest(session, Hold.ready_at, *active)
        overdue = self._count(session, Hold, *active, Hold.pickup_by < self.today())
        note = (
            f"{overdue} of them wait past their pickup-by date: holdshelf expire ends them"
            if overdue
            else None
        )
        return RecordKind(
            "active_hold_links",
            "Active holds linked to a patron pseudonym",
            count,
            oldest,
            "while the hold waits; the link is deleted when the hold ends",
            note=note,
        )

    def _ended_links(self, session: Session, now: dt.datetime) -> RecordKind:
        ended = (Hold.status != HoldStatus.READY.value, Hold.patron.is_not(None))
        count, oldest = self._count_and_oldest(session, Hold.ended_at, *ended)
        cutoff = unlink_cutoff(now, self.settings.retention_days) - PURGE_GRACE
        past = self._count(session, Hold, *ended, Hold.ended_at <= cutoff)
        return RecordKind(
            "ended_hold_links",
            "Ended holds still linked to a patron pseudonym",
            count,
            oldest,
            self._ended_rule(),
            past_retention=past,
        )

    def _ended_rule(self) -> str:
        days = self.settings.retention_days
        if days == 0:
            return "none: the link is deleted the moment the hold ends"
        return f"{days} days after the hold ends (retention.ended_hold_days), then purged"

    def _sealed_notices(self, session: Session, now: dt.datetime) -> RecordKind:
        sealed = (Notice.sealed.is_not(None),)
        count, oldest = self._count_and_oldest(session, Notice.created_at, *sealed)
        orphaned = self._count(session, Notice, *sealed, ~self._hold_waits(Notice))
        return RecordKind(
            "sealed_notice_contacts",
            "Notices waiting with a sealed email address or phone number",
            count,
            oldest,
            "until the mail server or SMS gateway accepts the message, it fails for good, "
            "or the hold ends",
            past_retention=orphaned,
        )

    def _sealed_on_scan(self, session: Session, now: dt.datetime) -> RecordKind:
        sealed = (Hold.on_scan.is_not(None),)
        count, oldest = self._count_and_oldest(session, Hold.ready_at, *sealed)
        ended = self._count(session, Hold, *sealed, Hold.status != HoldStatus.READY.value)
        return RecordKind(
            "sealed_on_scan",
            "Holds registered by the ILS with sealed contacts (and title) for the item's scan",
            count,
            oldest,
            "until the item is scanned (its slip and notices are queued) or the hold ends",
            past_retention=ended,
        )

    def _preferences(self, session: Session, now: dt.datetime) -> RecordKind:
        default = self.settings.default_pickup.value
        count = self._count(session, PatronPreference)
        redundant = self._count(session, PatronPreference, PatronPreference.mode == default)
        return RecordKind(
            "pickup_preferences",
            "Stored pickup preferences (pseudonym and choice)",
            count,
            None,
            f"while the patron's choice differs from the library's default ({default}); "
            "deleted when they choose the default",
            past_retention=redundant,
        )

    def _desk_focus(self, session: Session, now: dt.datetime) -> RecordKind:
        focused = (WebSession.patron.is_not(None),)
        count = self._count(session, WebSession, *focused)
        timed_out = WebSession.patron_until < now - PURGE_GRACE
        stale = self._count(session, WebSession, *focused, timed_out)
        return RecordKind(
            "desk_patron_focus",
            "Desk sessions with a patron in focus (pseudonym)",
            count,
            None,
            "until the clerk is done with the patron or the focus times out",
            past_retention=stale,
        )

    def _audit_entries(self, session: Session, now: dt.datetime) -> RecordKind:
        days = self.settings.audit_days
        count, oldest = self._count_and_oldest(session, AuditEntry.at)
        cutoff = now - dt.timedelta(days=days) - PURGE_GRACE
        past = self._count(session, AuditEntry, AuditEntry.at < cutoff)
        return RecordKind(
            "desk_audit_entries",
            "Desk audit entries (which staff member, when, what; never which patron)",
            count,
            oldest,
            f"{days} days (retention.audit_days)",
            past_retention=past,
        )

    def _titles_in_print_jobs(self, session: Session, now: dt.datetime) -> RecordKind:
        # Most slips carry no title ("title": null, as json.dumps writes it): only the others
        # are read, and each is confirmed by parsing it.
        rows = session.execute(
            select(PrintJob.created_at, PrintJob.finished_at, PrintJob.payload).where(
                PrintJob.payload.not_like(f"%{UNTITLED}%")
            )
        ).all()
        titled = [row for row in rows if _has_title(row.payload)]
        cutoff = now - FINISHED_KEPT - PURGE_GRACE
        past = sum(1 for row in titled if row.finished_at is not None and row.finished_at <= cutoff)
        return RecordKind(
            "titles_in_print_jobs",
            "Print jobs carrying a title",
            len(titled),
            min((row.created_at for row in titled), default=None),
            "until a day after the slip is printed or given up (titles print only when "
            "[slips] show_title is on)",
            past_retention=past,
        )

    def _request_fingerprints(self, session: Session, now: dt.datetime) -> RecordKind:
        count, oldest = self._count_and_oldest(session, IdempotencyRecord.created_at)
        cutoff = now - IDEMPOTENCY_KEPT - PURGE_GRACE
        past = self._count(session, IdempotencyRecord, IdempotencyRecord.created_at < cutoff)
        return RecordKind(
            "api_request_fingerprints",
            "API requests remembered for retries (a keyed hash of a request that named a card)",
            count,
            oldest,
            "24 hours",
            past_retention=past,
        )

    def schedule(self) -> list[ScheduleEntry]:
        """The retention schedule as configured (what each record's rule is, and its key)."""
        web = self.settings.web
        return [
            ScheduleEntry("Link from an ended hold to the patron", self._ended_rule(), None),
            ScheduleEntry(
                "Desk audit entries",
                f"{self.settings.audit_days} days",
                "retention.audit_days",
            ),
            ScheduleEntry(
                "Sealed contacts of a notice",
                "until the message is accepted, fails for good, or the hold ends",
                None,
            ),
            ScheduleEntry(
                "Printed slips (and any title in them)",
                f"{FINISHED_KEPT.days} day after printing",
                None,
            ),
            ScheduleEntry(
                "Codes of ended holds (no patron)",
                f"{CODE_QUARANTINE.days} days, so a code is not reissued",
                None,
            ),
            ScheduleEntry(
                "Desk sign-ins (and the patron in focus)",
                f"{_minutes(web.session_idle)} idle, {_minutes(web.session_max)} at most",
                "web.session_idle_minutes, web.session_max_hours",
            ),
            ScheduleEntry("API retry records", "24 hours", None),
            ScheduleEntry("Daily counts per branch (no patron)", "kept", None),
        ]

    # -- one patron --------------------------------------------------------------------------

    def disclose(self, card: str, audit: Callable[[str], None]) -> Disclosure:
        """What Holdshelf holds about the patron of ``card``. The card becomes its pseudonym at
        once and goes nowhere else; ``audit`` writes the audit entry (Accounts.audit for a
        signed-in admin), once the card was read, as the desk's patron lookup does."""
        pseudonym = self._service.pseudonym(card)
        view = self._service.patron_view(pseudonym)
        with self._reads() as session:
            codes = [(entry.branch, entry.code.compact) for entry in view.holds]
            sealed = sum(self._sealed_for(session, branch, code) for branch, code in codes)
            ended = self._count(
                session, Hold, Hold.patron == pseudonym, Hold.status != HoldStatus.READY.value
            )
        audit(DISCLOSURE_ACTION)
        log.info("privacy disclosure lookup")
        for_scan = sum(1 for entry in view.holds if entry.awaiting_scan_since is not None)
        return Disclosure(view, sealed, for_scan, ended, self._statement(ended))

    def _sealed_for(self, session: Session, branch: str, code: str) -> int:
        of_the_hold = (Notice.branch == branch, Notice.code == code)
        return self._count(session, Notice, *of_the_hold, Notice.sealed.is_not(None))

    def _statement(self, ended_linked: int) -> str:
        days = self.settings.retention_days
        if days == 0:
            return ENDED_HOLDS_UNLINKED
        return (
            f"Holds that have ended keep their link to the patron's pseudonym for {days} days "
            f"(retention.ended_hold_days), then cannot be linked to anyone; {ended_linked} "
            "such ended holds are linked to this patron now."
        )

    # -- housekeeping ------------------------------------------------------------------------

    def record(self, event: str) -> None:
        """Note that the instance purged or was backed up, now."""
        from holdshelf.storage import database

        with self._sessions.begin() as session:
            statement = database.dialect_insert(session, InstanceEvent).values(
                event=event, at=self._clock()
            )
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["event"], set_={"at": statement.excluded.at}
                )
            )


def _has_title(payload: str) -> bool:
    try:
        return bool(json.loads(payload).get("title"))
    except (ValueError, AttributeError):
        return False


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    """min() over a UtcDateTime column comes back naive on SQLite: it is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=dt.UTC)


def _minutes(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} hours" if minutes % 60 == 0 else f"{minutes} minutes"
