"""Leases: a job that must run in one process at a time, whichever of several processes on
one database that is (the hourly purge, the ILS sync).

A lease is a row: its name, the holder (host and process id) and when the hold runs out. A
process takes or renews it with one conditional upsert, which succeeds only if the row is
new, already this process's, or run out; so of two processes trying at once exactly one
gets it, on PostgreSQL and on SQLite alike. The holder renews it every RENEW_EVERY; a holder
that crashed stops renewing, its lease runs out after LEASE_FOR, and the next process that
tries takes it over. A holder that could not renew in time (the database away) counts the
lease lost from the moment it would have run out, and stops. The row also says when the job
last finished (``done_at``), so a new holder does not run an hourly job again within the hour,
and the operations pages can say who holds what, until when.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from holdshelf.clock import Clock
from holdshelf.storage.database import dialect_insert, read_sessions
from holdshelf.storage.models import Lease as LeaseRow

log = logging.getLogger(__name__)

LEASE_FOR = dt.timedelta(seconds=60)
RENEW_EVERY = dt.timedelta(seconds=15)  # a few renewals may fail before the lease runs out


def process_holder() -> str:
    """This process's name as a lease holder: host, pid and a random tag (a pid is reused)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class LeaseState:
    """A lease as the operations pages show it."""

    name: str
    holder: str
    expires_at: dt.datetime
    done_at: dt.datetime | None


class Lease:
    """One named lease as this process sees it."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        name: str,
        holder: str,
        lease_for: dt.timedelta | None = None,
    ) -> None:
        self.name, self.holder = name, holder
        self._sessions, self._clock = sessions, clock
        self._lease_for = lease_for or LEASE_FOR
        self._held_until: dt.datetime | None = None
        self.done_at: dt.datetime | None = None  # when the job last finished, as of the last try
        self._lock = threading.Lock()

    def keep(self) -> bool:
        """Take the lease, or renew it if this process holds it: one statement. Whether this
        process holds it now."""
        now = self._clock()
        until = now + self._lease_for
        with self._sessions.begin() as session:
            statement = dialect_insert(session, LeaseRow).values(
                name=self.name, holder=self.holder, expires_at=until
            )
            done = session.execute(
                statement.on_conflict_do_update(
                    index_elements=["name"],
                    set_={"holder": self.holder, "expires_at": until},
                    where=or_(LeaseRow.holder == self.holder, LeaseRow.expires_at <= now),
                ).returning(LeaseRow.done_at)
            ).one_or_none()
        with self._lock:
            was_held = self.holding()
            self._held_until = until if done is not None else None
            if done is not None:
                self.done_at = done[0]
        if done is not None and not was_held:
            log.info("lease %s taken by %s", self.name, self.holder)
        elif done is None and was_held:
            log.warning("lease %s lost: another process holds it", self.name)
        return done is not None

    def holding(self) -> bool:
        """Whether this process holds the lease: renewed, and not about to run out (a margin
        for clocks a little apart: another process may take it over once it has)."""
        until = self._held_until
        return until is not None and self._clock() < until - self._lease_for / 6

    def due(self, every: dt.timedelta) -> bool:
        """Whether this process holds the lease and the job last finished ``every`` ago or
        never (whichever process did it)."""
        done = self.done_at
        return self.holding() and (done is None or self._clock() >= done + every)

    def done(self, started: dt.datetime) -> None:
        """Record that the job ``started`` then has finished (while this process holds the
        lease): the next is due ``every`` after its start, as in one process."""
        with self._sessions.begin() as session:
            session.execute(
                update(LeaseRow)
                .where(LeaseRow.name == self.name, LeaseRow.holder == self.holder)
                .values(done_at=started)
            )
        self.done_at = started

    def release(self) -> None:
        """Let another process take the lease at once (this one is stopping)."""
        if self._held_until is None:
            return
        self._held_until = None
        with self._sessions.begin() as session:
            session.execute(
                update(LeaseRow)
                .where(LeaseRow.name == self.name, LeaseRow.holder == self.holder)
                .values(expires_at=self._clock())
            )


class LeaseKeeper:
    """Takes and renews this process's leases every RENEW_EVERY, in a thread of its own, so a
    long purge or sync (or a slow printer holding up the worker's pass) never lets a lease run
    out while its holder is alive."""

    def __init__(self, leases: Sequence[Lease], renew_every: dt.timedelta | None = None) -> None:
        self.leases = list(leases)
        self._renew_every = renew_every or RENEW_EVERY

    def keep_all(self) -> None:
        for lease in self.leases:
            try:
                lease.keep()
            except DBAPIError as exc:  # the database away: it runs out unless renewed in time
                log.warning("lease %s not renewed (%s)", lease.name, type(exc.orig).__name__)

    def run(self, stop: threading.Event) -> None:
        """Keep the leases until ``stop`` is set; then release them for the next process."""
        while True:
            self.keep_all()
            if stop.wait(self._renew_every.total_seconds()):
                break
        for lease in self.leases:
            with contextlib.suppress(DBAPIError):  # else it runs out by itself
                lease.release()

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="leases", daemon=True)
        thread.start()
        return thread


def lease_states(sessions: sessionmaker[Session]) -> list[LeaseState]:
    """Every lease: who holds it, until when, when its job last finished."""
    with read_sessions(sessions)() as session:
        rows = session.scalars(select(LeaseRow).order_by(LeaseRow.name))
        return [LeaseState(row.name, row.holder, row.expires_at, row.done_at) for row in rows]
