"""Database tables. What is deliberately absent: card numbers, names, titles, contact details.

- ``shelf_codes`` claims a code at a branch: while a hold uses it, and for 30 days after the hold
  ends (``released_at``), so a stale slip never points at another patron's item. Its primary key
  is what makes codes unique under concurrent writers.
- ``holds`` are active holds. The ``patron`` pseudonym is the only link to a person; an ended
  hold's row is deleted at once (or kept ``retention.ended_hold_days`` with the link, then purged).
- ``patron_preferences`` holds a pseudonym and a choice, and only while the choice differs from
  the library's default.
- ``daily_counts`` are the aggregate numbers that remain.
"""

from __future__ import annotations

import datetime as dt
from enum import IntEnum, StrEnum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Every timestamp column: aware datetimes in, aware UTC datetimes out, stored as naive
    UTC (the same on SQLite and PostgreSQL, as the columns always held). A naive datetime is
    refused: it says nothing about which zone it meant."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("a naive datetime cannot be stored: give it a time zone")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Delivery(StrEnum):
    """Where a queued slip or notice stands (the outbox tables' ``status``)."""

    QUEUED = "queued"  # waiting, or being retried
    SENT = "sent"  # the printer or the mail server took it
    FAILED = "failed"  # refused for good
    DROPPED = "dropped"  # its hold ended before it went


class Priority(IntEnum):
    """Which queued rows a worker takes first (the outbox tables' ``priority``, lowest first):
    a clerk waits at the desk for one slip while an import's thousands can wait."""

    DESK = 0  # one hold: made at the desk, by an ILS check-in, by an API call
    BULK = 1  # a report import's holds


NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BRANCH = String(32)
CODE = String(16)
PSEUDONYM = String(64)
MODE = String(8)
ACTIVE = text("status = 'ready'")
SHELF_COUNTED = ("branch", "code", "mode", "pickup_by", "not_in_ils_since", "status")
AWAITING_SCAN = text("status = 'ready' AND on_scan IS NOT NULL")
# As each database writes ``Hold.move_to_desk.is_(True)``, which a partial index must match.
TO_MOVE = {
    "sqlite": text("status = 'ready' AND move_to_desk IS 1"),
    "postgresql": text("status = 'ready' AND move_to_desk IS true"),
}
# The rows a worker may still claim. A literal, in the claim too: a partial index serves only
# queries whose WHERE says the same, which a bound parameter cannot.
QUEUED = text("status = 'queued'")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ShelfCodeClaim(Base):
    __tablename__ = "shelf_codes"

    branch: Mapped[str] = mapped_column(BRANCH, primary_key=True)
    code: Mapped[str] = mapped_column(CODE, primary_key=True)
    # None while a hold uses the code; then the moment it was freed (UTC).
    released_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class Hold(Base):
    __tablename__ = "holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    branch: Mapped[str] = mapped_column(BRANCH)
    code: Mapped[str] = mapped_column(CODE)
    item_barcode: Mapped[str] = mapped_column(String(64))
    # HMAC pseudonym of the patron's card; None once an ended hold is unlinked.
    patron: Mapped[str | None] = mapped_column(PSEUDONYM)
    mode: Mapped[str] = mapped_column(MODE)
    status: Mapped[str] = mapped_column(String(16), default="ready")
    pickup_by: Mapped[dt.date] = mapped_column(Date)
    ready_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # Set when the patron opted out while this hold stood on the open shelf.
    move_to_desk: Mapped[bool] = mapped_column(default=False)
    # A hold an ILS registered ahead of the item's scan (API "print": "on-scan"): its title and
    # contacts, sealed, until the scan queues its slip and notices; then None.
    on_scan: Mapped[str | None] = mapped_column(Text)
    # When a complete report of the branch's waiting holds (import --complete) first left this
    # hold out; the next complete report written after it that leaves it out too ends it.
    not_in_ils_since: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        ForeignKeyConstraint(["branch", "code"], ["shelf_codes.branch", "shelf_codes.code"]),
        UniqueConstraint("branch", "code"),
        CheckConstraint("status IN ('ready', 'picked_up', 'expired', 'cancelled')", "status"),
        CheckConstraint("mode IN ('shelf', 'desk')", "mode"),
        CheckConstraint("status = 'ready' OR ended_at IS NOT NULL", "ended"),
        # One active hold per item: a second trap of the same item is a conflict.
        Index(
            "uq_holds_active_item",
            "item_barcode",
            unique=True,
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        ),
        # Lookups by item bind the status as a parameter, which a partial index cannot serve.
        Index("ix_holds_item_barcode", "item_barcode"),
        Index("ix_holds_patron", "patron"),
        # Expiry and the overdue lists read active holds by date (every query of the dates asks
        # for active holds: no index leads with the status, for SQLite to prefer wrongly).
        Index(
            "ix_holds_active_pickup_by", "pickup_by", sqlite_where=ACTIVE, postgresql_where=ACTIVE
        ),
        # The shelf's reads walk a branch's active holds in shelving order (pages, sections);
        # the rest covers the counts by section, which then read the index alone.
        Index(
            "ix_holds_active_shelf",
            *SHELF_COUNTED,
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        ),
        # The shelf page's two short lists, which a whole branch's walk found slowly: items
        # an ILS registered that await their scan, and holds whose patrons chose the desk.
        Index(
            "ix_holds_awaiting_scan",
            "branch",
            "ready_at",
            sqlite_where=AWAITING_SCAN,
            postgresql_where=AWAITING_SCAN,
        ),
        Index(
            "ix_holds_to_move",
            "branch",
            "code",
            sqlite_where=TO_MOVE["sqlite"],
            postgresql_where=TO_MOVE["postgresql"],
        ),
    )


class PatronPreference(Base):
    __tablename__ = "patron_preferences"

    patron: Mapped[str] = mapped_column(PSEUDONYM, primary_key=True)
    mode: Mapped[str] = mapped_column(MODE)

    __table_args__ = (CheckConstraint("mode IN ('shelf', 'desk')", "mode"),)


class DailyCount(Base):
    __tablename__ = "daily_counts"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    branch: Mapped[str] = mapped_column(BRANCH, primary_key=True)
    event: Mapped[str] = mapped_column(String(16), primary_key=True)
    mode: Mapped[str] = mapped_column(MODE, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class OutboxMixin:
    """What every outbox row (a slip to print, a notice to send) carries to be delivered once,
    by one worker at a time, with retries: see holdshelf.outbox."""

    status: Mapped[str] = mapped_column(String(8), default=Delivery.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    # A worker sending the row holds it until then; a crashed worker's row is taken up after.
    leased_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    priority: Mapped[int] = mapped_column(
        SmallInteger, default=Priority.DESK.value, server_default="0"
    )


def claim_index(table: str) -> Index:
    """The order a worker claims queued rows in (holdshelf.outbox.claim_order), on queued rows
    only: the day's finished rows are never scanned, however many an import printed. With the
    retry time, so a row waiting for it is passed over in the index."""
    columns = ("priority", "id", "next_attempt_at")
    return Index(f"ix_{table}_claim", *columns, sqlite_where=QUEUED, postgresql_where=QUEUED)


class PrintJob(OutboxMixin, Base):
    """A slip waiting for (or sent to) a printer: the outbox of the print queue.

    Written in the transaction that makes the hold ready, so a crash cannot lose a slip. The
    payload is the slip's own allow-listed fields (holdshelf.domain.slips.Slip): no patron.
    """

    __tablename__ = "print_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Sent to the branch's printer as configured when it is sent, so a printer replaced in the
    # configuration takes over the waiting slips.
    branch: Mapped[str] = mapped_column(BRANCH)
    code: Mapped[str] = mapped_column(CODE)
    kind: Mapped[str] = mapped_column(String(8))  # slip | reprint
    payload: Mapped[str] = mapped_column(Text)
    # How far the newest attempt got, committed before the paper can move (see print_worker):
    # "sending" (its bytes may have reached the printer), "accepted" (the printer read every
    # byte and said it was online, and the worker waits for its process-ID response); None
    # when no attempt is in flight or the slip is finished.
    phase: Mapped[str | None] = mapped_column(String(8))
    # The ESC/POS process ID (GS ( H) of that attempt, four printable characters.
    process_id: Mapped[str | None] = mapped_column(String(4))

    __table_args__ = (
        CheckConstraint("status IN ('queued', 'sent', 'failed', 'dropped')", "status"),
        CheckConstraint("kind IN ('slip', 'reprint')", "kind"),
        CheckConstraint("phase IN ('sending', 'accepted')", "phase"),
        Index("ix_print_jobs_branch_code", "branch", "code"),
        claim_index("print_jobs"),
    )


class Notice(OutboxMixin, Base):
    """A "your hold is ready" message waiting for (or handed to) the mail server or SMS gateway.

    ``sealed`` is the only place a contact detail is ever stored: Fernet-encrypted with the
    instance's data key, and erased (set to NULL) the moment the server accepts the message,
    it fails for good, or the hold ends. The message itself is composed when it is sent.
    """

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    branch: Mapped[str] = mapped_column(BRANCH)
    code: Mapped[str] = mapped_column(CODE)
    channel: Mapped[str] = mapped_column(String(8))  # email | sms
    sealed: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("status IN ('queued', 'sent', 'failed', 'dropped')", "status"),
        CheckConstraint("channel IN ('email', 'sms')", "channel"),
        CheckConstraint("status = 'queued' OR sealed IS NULL", "erased"),
        Index("ix_notices_branch_code", "branch", "code"),
        claim_index("notices"),
    )


class StaffUser(Base):
    """A circulation staff account. Passwords are Argon2id hashes; no default account exists."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(8))  # staff | admin
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (CheckConstraint("role IN ('staff', 'admin')", "role"),)


class WebSession(Base):
    """A signed-in browser. The cookie carries only a random id whose hash is stored here, so
    signing out (deleting the row) makes a copied cookie useless."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"))
    branch: Mapped[str | None] = mapped_column(BRANCH)
    # The patron in focus at the patron desk, as a pseudonym: the card never enters a page.
    patron: Mapped[str | None] = mapped_column(PSEUDONYM)
    patron_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class LoginFailure(Base):
    """Failed sign-ins, for rate limiting: keyed by a hash of the account name or address."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class WorkerHeartbeat(Base):
    """One row per running worker (a `worker`, or the worker thread of a `serve`), renewed
    every few seconds: how /healthz in another process knows a worker is alive. It names a
    host and process, nothing else."""

    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    beat_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class AuditEntry(Base):
    """Who looked at or changed a patron's record at the desk, or unlocked a staff account,
    when: never which patron."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    staff: Mapped[str] = mapped_column(String(64))
    branch: Mapped[str | None] = mapped_column(BRANCH)
    action: Mapped[str] = mapped_column(String(32))


class ApiToken(Base):
    """A named integration token for an ILS. Only the token's SHA-256 hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    branches: Mapped[str] = mapped_column(String(400), default="")  # comma-separated; "" = all
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # What the token may do: "api" (the holds API) or "print-agent" (fetch and acknowledge one
    # branch's slips, nothing else: holdshelf.agents).
    scope: Mapped[str] = mapped_column(String(16), default="api", server_default="api")

    __table_args__ = (CheckConstraint("scope IN ('api', 'print-agent')", "scope"),)


class PrintAgent(Base):
    """What a branch print agent last said: when it last asked for slips, and its printer's
    status as the agent saw it. One row per agent token; nothing about any patron."""

    __tablename__ = "print_agents"

    token_id: Mapped[int] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True
    )
    branch: Mapped[str] = mapped_column(BRANCH)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    printer_status: Mapped[str] = mapped_column(String(200), default="")
    # False: the printer reported a fault (off, paper out, cover open); None: not known yet.
    printer_ok: Mapped[bool | None] = mapped_column(Boolean)


class IdempotencyRecord(Base):
    """An API request made with an Idempotency-Key, and the response it got, for 24 hours.

    ``fingerprint`` is an HMAC of the request body (which holds a card number) under the
    instance's key, so it cannot be turned back into the card; ``response`` holds only what
    the API answered (codes and dates)."""

    __tablename__ = "idempotency_keys"

    token_id: Mapped[int] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer)  # None while the first request runs
    response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)


class Lease(Base):
    """Which process does a job that must run in one process at a time (the hourly purge, the
    ILS sync), until when, and when it last finished it (holdshelf.storage.leases). The holder
    is a host name and process id: nothing about patrons."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    done_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class RateBucket(Base):
    """Requests counted for a limit shared by every app process (holdshelf.storage.rate_limits):
    per key and short time slot. The key is an HMAC of an address or token id under the
    instance's key, so the table tells no one which addresses asked."""

    __tablename__ = "rate_buckets"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, index=True)
    count: Mapped[int] = mapped_column(Integer)


class InstanceEvent(Base):
    """When the instance last did something the privacy officer asks about: the last purge
    (``purged``) and the last backup (``backed_up``). One row per kind, no patron."""

    __tablename__ = "instance_events"

    event: Mapped[str] = mapped_column(String(16), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


PURGED = "purged"  # InstanceEvent.event: housekeeping ran (holdshelf.bootstrap)
BACKED_UP = "backed_up"  # `holdshelf backup` copied the database (and stamped the copy)
