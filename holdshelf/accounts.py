"""Staff accounts, signed-in sessions, sign-in throttling and the desk audit log.

Knows nothing of Flask: the web app and the CLI both use it. Sessions live in the database, so
signing out ends a session for good and several app servers share them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import secrets
import threading
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from holdshelf.clock import Clock
from holdshelf.domain.inputs import clean_barcode
from holdshelf.errors import Conflict, HoldshelfError, InvalidInput, NotFound
from holdshelf.settings import Settings
from holdshelf.storage.database import read_sessions, serialise_on
from holdshelf.storage.models import AuditEntry, LoginFailure, StaffUser, WebSession

log = logging.getLogger(__name__)

ROLES = ("staff", "admin")
MIN_PASSWORD_LENGTH = 10
PATRON_FOCUS = dt.timedelta(minutes=5)  # how long the patron desk keeps a scanned patron
LAST_SEEN_GRANULARITY = dt.timedelta(minutes=1)  # not a write per page view
AUDIT_ACTION_LENGTH = AuditEntry.__table__.c.action.type.length
AUDIT_STAFF_LENGTH = AuditEntry.__table__.c.staff.type.length
COMMAND_LINE = "command line"  # the audit log's staff for what the CLI did
_hasher = PasswordHasher()  # Argon2id, the library's recommended parameters
_dummy_lock = threading.Lock()
_dummy: str | None = None  # made by _dummy_hash, once


def _dummy_hash() -> str:
    """What a password is verified against when the account does not exist, so a wrong name
    costs as long as a wrong password and timing does not reveal which accounts exist.

    Made on first use, not at import: an Argon2 hash costs 100-160 ms and 64 MiB, which every
    CLI command and every process that never signs anyone in would pay for nothing. It is made
    with the hasher's own parameters (not kept as a constant), so verifying against it costs
    what verifying a real account's hash costs."""
    global _dummy
    with _dummy_lock:  # waitress threads signing in at once still make only one
        if _dummy is None:
            _dummy = _hasher.hash(secrets.token_urlsafe(16))
        return _dummy


class SignInRefused(HoldshelfError):
    """Wrong name or password, or too many attempts. Never says whether the account exists."""


class SignInThrottled(SignInRefused):
    """Too many failed sign-ins lately for this account name, or from this address."""

    def __init__(self, message: str, wait: dt.timedelta) -> None:
        super().__init__(message)
        self.wait = wait


@dataclass(frozen=True)
class StaffSession:
    user_id: int
    name: str
    role: str
    branch: str | None
    patron: str | None  # pseudonym of the patron in focus at the desk, while it lasts
    # An opaque tag of this focus (new at every card scan): a patron page and its forms carry
    # it, so a page showing one patron can never act on another.
    focus: str | None = None

    @property
    def admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class AccountView:
    """A staff account as the admin pages list it: recent failures and any lockout."""

    name: str
    role: str
    failures: int  # failed sign-ins within the window
    locked_for: dt.timedelta | None  # how long it must still wait, while locked out


@dataclass(frozen=True)
class AuditView:
    at: dt.datetime
    staff: str
    branch: str | None
    action: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _account_key(name: str) -> str:
    # Any name typed is counted, existing or not, so a lockout never tells which accounts
    # exist; case is folded so that "Alice" gets no fresh tries after "alice".
    return _digest(f"user:{name.strip().lower()}")


def _address_key(address: str) -> str:
    return _digest(f"address:{address}")


def minutes_text(wait: dt.timedelta) -> str:
    """A wait as "7 minutes": rounded up, and at least one ("0 minutes" helps nobody)."""
    minutes = max(1, math.ceil(wait.total_seconds() / 60))
    return f"{minutes} minute" if minutes == 1 else f"{minutes} minutes"


class Accounts:
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

    # -- users --------------------------------------------------------------------------------

    def add_user(self, name: str, password: str, role: str) -> None:
        name = _check_name(name)
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
        user = StaffUser(
            name=name, password_hash=_hash(password), role=role, created_at=self._clock()
        )
        try:
            with self._sessions.begin() as session:
                session.add(user)
        except IntegrityError:
            raise Conflict(f"a staff account named {name!r} exists already") from None
        log.info("staff account %s added (%s)", name, role)

    def set_password(self, name: str, password: str) -> None:
        with self._sessions.begin() as session:
            user = _user(session, name)
            user.password_hash = _hash(password)
            session.execute(delete(WebSession).where(WebSession.user_id == user.id))

    def remove_user(self, name: str) -> None:
        with self._sessions.begin() as session:
            user = _user(session, name)
            session.execute(delete(WebSession).where(WebSession.user_id == user.id))
            session.delete(user)

    def users(self) -> list[tuple[str, str]]:
        with self._reads() as session:
            return [
                (user.name, user.role)
                for user in session.scalars(select(StaffUser).order_by(StaffUser.name))
            ]

    def account_views(self) -> list[AccountView]:
        """Every account with its failed sign-ins in the window and, while locked out, the
        wait. Only real accounts: failures under other names stay anonymous hashes."""
        now = self._clock()
        web = self.settings.web
        with self._reads() as session:
            users = [
                (_account_key(user.name), user)
                for user in session.scalars(select(StaffUser).order_by(StaffUser.name))
            ]
            failures: dict[str, int] = dict(
                session.execute(  # .all(): a Result has keys(), so dict() would misread it
                    select(LoginFailure.key_hash, func.count())
                    .where(
                        LoginFailure.key_hash.in_([key for key, _ in users]),
                        LoginFailure.at > now - web.login_window,
                    )
                    .group_by(LoginFailure.key_hash)
                ).all()
            )
            views = []
            for key, user in users:
                count = failures.get(key, 0)
                until = (
                    self._locked_until(session, key, web.login_attempts, now)
                    if count >= web.login_attempts
                    else None
                )
                views.append(
                    AccountView(user.name, user.role, count, until - now if until else None)
                )
            return views

    # -- signing in and out -------------------------------------------------------------------

    def sign_in(self, name: str, password: str, address: str) -> str:
        """A new session token for the right name and password, unless this account name has
        failed too often lately, or this address far too often. The limits are apart, so a
        colleague at the same desk signs in while a mistyped account waits."""
        now = self._clock()
        web = self.settings.web
        account, place = _account_key(name), _address_key(address)
        # Before looking the name up: the first sign-in of a process pays for the dummy hash
        # whether or not the account exists, so not even that one tells which names exist.
        _dummy_hash()
        with self._sessions.begin() as session:
            # Count, verify and record as one step: parallel guesses (threads, app servers)
            # wait here instead of all passing the count before any failure is recorded.
            serialise_on(session, account, place)
            self._refuse_if_locked(session, account, web.login_attempts, now, "for this account")
            self._refuse_if_locked(
                session, place, web.login_attempts_per_address, now, "from this address"
            )
            user = session.scalar(select(StaffUser).where(StaffUser.name == name.strip()))
            if _password_matches(user, password):
                assert user is not None
                if _hasher.check_needs_rehash(user.password_hash):
                    user.password_hash = _hasher.hash(password)
                token = secrets.token_urlsafe(32)
                session.add(
                    WebSession(
                        id_hash=_digest(token), user_id=user.id, created_at=now, last_seen=now
                    )
                )
            else:
                session.add_all(LoginFailure(key_hash=key, at=now) for key in (account, place))
                user = None
        if user is None:
            log.warning("failed sign-in")
            raise SignInRefused("wrong account name or password")
        log.info("staff %s signed in", user.name)
        return token

    def _refuse_if_locked(
        self, session: Session, key: str, limit: int, now: dt.datetime, whose: str
    ) -> None:
        until = self._locked_until(session, key, limit, now)
        if until is not None:
            log.warning("sign-in refused: too many failed sign-ins %s", whose)
            raise SignInThrottled(
                f"too many failed sign-ins {whose}: try again in {minutes_text(until - now)}",
                until - now,
            )

    def _locked_until(
        self, session: Session, key: str, limit: int, now: dt.datetime
    ) -> dt.datetime | None:
        """When ``key`` falls below ``limit`` failures in the window; None if it is below.
        That is when the limit-th newest failure ages out: the oldest one counted, unless the
        limit was lowered since they were recorded."""
        window = self.settings.web.login_window
        at = session.scalar(
            select(LoginFailure.at)
            .where(LoginFailure.key_hash == key, LoginFailure.at > now - window)
            .order_by(LoginFailure.at.desc())
            .offset(limit - 1)
            .limit(1)
        )
        return None if at is None else at + window

    def unlock(self, name: str, by: StaffSession | None = None) -> int:
        """Forget this account's failed sign-ins so it may sign in at once; how many there
        were. An admin's unlock at the web app (``by``) is in the audit log, in the same
        transaction. Failures from an address stay: they count for every name tried there."""
        with self._sessions.begin() as session:
            user = _user(session, name)
            cleared = session.execute(
                delete(LoginFailure).where(LoginFailure.key_hash == _account_key(user.name))
            ).rowcount
            if by is not None:
                session.add(self._audit_entry(by, f"unlocked {user.name}"))
        log.info("staff account %s unlocked (%d failed sign-ins cleared)", user.name, cleared)
        return cleared

    def unlock_address(self, address: str, by: StaffSession | None = None) -> int:
        """Forget the failed sign-ins from one address (a desk PC, or a proxy's address before
        `behind_proxy` was set); how many there were. Audited like an account's unlock."""
        address = clean_barcode(address, "address")
        with self._sessions.begin() as session:
            cleared = session.execute(
                delete(LoginFailure).where(LoginFailure.key_hash == _address_key(address))
            ).rowcount
            if by is not None:
                session.add(self._audit_entry(by, "unlocked an address"))
        log.info("an address unlocked (%d failed sign-ins cleared)", cleared)
        return cleared

    def session(self, token: str | None) -> StaffSession | None:
        """The live session for this token; None if unknown, signed out or timed out."""
        if not token:
            return None
        now = self._clock()
        # Every request asks this, and few change anything (last_seen once a minute, an ended
        # session or patron focus): it is read first, and written only when a change is due,
        # so page views do not queue for SQLite's write lock behind an import.
        with self._reads() as session:
            staff = self._live_session(session, token, now)
            if not (session.dirty or session.deleted):
                return staff
        with self._sessions.begin() as session:
            return self._live_session(session, token, now)

    def _live_session(self, session: Session, token: str, now: dt.datetime) -> StaffSession | None:
        """The session for ``token``, with what is due changed on its row (not flushed)."""
        web = self.settings.web
        row = session.get(WebSession, _digest(token))
        if row is None:
            return None
        if now - row.last_seen > web.session_idle or now - row.created_at > web.session_max:
            session.delete(row)
            return None
        user = session.get(StaffUser, row.user_id)
        if user is None:
            return None
        if now - row.last_seen > LAST_SEEN_GRANULARITY:
            row.last_seen = now
        if row.patron_until is not None and row.patron_until <= now:
            # The focus is over: the pseudonym goes from the row, not just from view,
            # so a session row never ties an audit entry to a patron.
            row.patron, row.patron_until = None, None
        focus = None
        if row.patron is not None and row.patron_until is not None:
            focus = _digest(f"{row.id_hash}|{row.patron}|{row.patron_until.isoformat()}")[:24]
        return StaffSession(user.id, user.name, user.role, row.branch, row.patron, focus)

    def sign_out(self, token: str | None) -> None:
        if token:
            with self._sessions.begin() as session:
                session.execute(delete(WebSession).where(WebSession.id_hash == _digest(token)))

    def set_branch(self, token: str, branch: str) -> None:
        with self._sessions.begin() as session:
            row = session.get(WebSession, _digest(token))
            if row is not None:
                row.branch = branch

    def focus_patron(self, token: str, pseudonym: str | None) -> None:
        """Keep (or forget) the patron the desk is serving: for a few minutes at most, and
        only while the desk stays on the patron page (the web app forgets it on leaving)."""
        with self._sessions.begin() as session:
            row = session.get(WebSession, _digest(token))
            if row is not None:
                row.patron = pseudonym
                row.patron_until = self._clock() + PATRON_FOCUS if pseudonym else None

    # -- audit and retention ------------------------------------------------------------------

    def audit(self, staff: StaffSession, action: str) -> None:
        with self._sessions.begin() as session:
            session.add(self._audit_entry(staff, action))

    def audit_command_line(self, action: str) -> None:
        """An action taken at the command line (a privacy disclosure lookup), in the audit log
        under the system account that ran it: the command line has no staff sign-in."""
        with self._sessions.begin() as session:
            session.add(self._entry(f"{COMMAND_LINE} ({_system_user()})", None, action))

    def _audit_entry(self, staff: StaffSession, action: str) -> AuditEntry:
        return self._entry(staff.name, staff.branch, action)

    def _entry(self, staff: str, branch: str | None, action: str) -> AuditEntry:
        # The columns are narrow: "unlocked " and a long account name is cut short, not refused.
        return AuditEntry(
            at=self._clock(),
            staff=staff[:AUDIT_STAFF_LENGTH],
            branch=branch,
            action=action[:AUDIT_ACTION_LENGTH],
        )

    def audit_entries(self, limit: int = 500) -> list[AuditView]:
        with self._reads() as session:
            rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit))
            return [AuditView(row.at, row.staff, row.branch, row.action) for row in rows]

    def purge(self) -> int:
        """Forget expired sessions, old sign-in failures and audit entries past retention."""
        now = self._clock()
        web = self.settings.web
        with self._sessions.begin() as session:
            removed = session.execute(
                delete(WebSession).where(
                    (WebSession.last_seen < now - web.session_idle)
                    | (WebSession.created_at < now - web.session_max)
                )
            ).rowcount
            session.execute(  # sessions left open after serving a patron
                update(WebSession)
                .where(WebSession.patron_until <= now)
                .values(patron=None, patron_until=None)
            )
            removed += session.execute(
                delete(LoginFailure).where(LoginFailure.at < now - web.login_window)
            ).rowcount
            removed += session.execute(
                delete(AuditEntry).where(
                    AuditEntry.at < now - dt.timedelta(days=self.settings.audit_days)
                )
            ).rowcount
        return removed


def _system_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry and no $USER
        return "unknown user"


def _check_name(name: str) -> str:
    name = clean_barcode(name, "account name")
    if any(ch.isspace() for ch in name):
        raise InvalidInput("an account name has no spaces")
    return name


def _hash(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def _user(session: Session, name: str) -> StaffUser:
    user = session.scalar(select(StaffUser).where(StaffUser.name == name))
    if user is None:
        raise NotFound(f"no staff account named {name!r}")
    return user


def _password_matches(user: StaffUser | None, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash if user else _dummy_hash(), password) and (
            user is not None
        )
    except (VerificationError, InvalidHashError):
        return False
