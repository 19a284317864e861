"""The one background worker: slips to printers and notices to patrons, until stopped.

`holdshelf worker` runs it on its own; `holdshelf serve` runs it in a thread next to the web
app, which wakes it as soon as a check-in has queued something. Other processes (the CLI, an
import, another app server) wake it through holdshelf.storage.wakeup; it polls besides.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy.orm import Session, sessionmaker

from holdshelf.accounts import Accounts
from holdshelf.clock import Clock
from holdshelf.errors import unexpected
from holdshelf.health import Heartbeat
from holdshelf.integrations import Integrations
from holdshelf.notice_worker import NoticeWorker
from holdshelf.outbox import PassReport
from holdshelf.print_worker import PrintWorker
from holdshelf.service import HoldService
from holdshelf.settings import Settings
from holdshelf.storage import database, leases
from holdshelf.storage.leases import Lease, LeaseKeeper, process_holder
from holdshelf.storage.wakeup import NO_WAKEUP, Wakeup
from holdshelf.workflow.sync import IlsSync

log = logging.getLogger(__name__)

# Retention is kept by the running server too, not only by a cron job someone may forget:
# ended holds' links, rested codes, finished slips and notices, sessions, old audit entries.
HOUSEKEEPING_EVERY = dt.timedelta(hours=1)
HOUSEKEEPING_RETRY = dt.timedelta(minutes=1)
SYNC_FIRST_DELAY = dt.timedelta(minutes=1)  # a starting server serves the desk first


@dataclass(frozen=True)
class HousekeepingReport:
    unlinked_holds: int
    freed_codes: int
    forgotten: int  # sessions, idempotency keys, sign-in failures, audit entries


def housekeep(
    service: HoldService, accounts: Accounts, integrations: Integrations
) -> HousekeepingReport:
    """Everything retention asks to delete, now (`holdshelf purge`, and hourly in `serve`)."""
    holds = service.purge()
    forgotten = accounts.purge() + integrations.purge()
    return HousekeepingReport(holds.unlinked_holds, holds.freed_codes, forgotten)


@dataclass(frozen=True)
class WorkReport:
    prints: PassReport
    notices: PassReport


class Worker:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        clock: Clock,
        *,
        housekeeping: Callable[[], HousekeepingReport],
        sync: IlsSync | None = None,
        wakeup: Wakeup = NO_WAKEUP,
    ) -> None:
        self.prints = PrintWorker(settings, sessions, clock)
        self.notices = NoticeWorker(settings, sessions, clock)
        self._housekeeping = housekeeping  # the composition root's, with its services
        self._sync = sync if settings.ils.sync_every is not None else None
        self._sync_every = settings.ils.sync_every or dt.timedelta(minutes=5)
        self._clock = clock
        self._next_housekeeping: dt.datetime | None = None
        self._wake = threading.Event()
        self._wakeup = wakeup
        # Set once wake-ups from other processes reach this worker (what tests wait for).
        self.listening = threading.Event()
        self._engine = sessions.kw["bind"]
        # One process of all on the database purges and syncs at a time (storage.leases).
        holder = process_holder()
        self.purge_lease = Lease(sessions, clock, "purge", holder)
        self.sync_lease = Lease(sessions, clock, "ils-sync", holder)
        self._leases = LeaseKeeper([self.purge_lease, *([self.sync_lease] if self._sync else [])])
        self.heartbeat = Heartbeat(sessions, clock)  # what /healthz reads, in any process

    def run_once(
        self, *, ignore_backoff: bool = False, stop: threading.Event | None = None
    ) -> WorkReport:
        """One pass over both queues; once ``stop`` is set it ends after the row being sent.
        Then SQLite's WAL is folded, so contacts erased in this pass (and links erased by desk
        requests that could not wait for readers) leave no page image behind: waiting for
        readers after an erasure here, trying without waiting otherwise."""
        report = WorkReport(
            prints=self.prints.run_once(ignore_backoff=ignore_backoff, stop=stop),
            notices=self.notices.run_once(ignore_backoff=ignore_backoff, stop=stop),
        )
        erased = report.notices.sent + report.notices.given_up + report.notices.dropped
        database.checkpoint(self._engine, **({} if erased else {"wait_ms": 0}))
        return report

    def sending(self) -> str | None:
        """What a pass is sending right now ("slip", "notice"), if anything."""
        if self.prints.delivering is not None:
            return "slip"
        if self.notices.delivering is not None:
            return "notice"
        return None

    def housekeep_if_due(self) -> HousekeepingReport | None:
        """Purge at the first pass and then every HOUSEKEEPING_EVERY; after a failure (the
        database away for a moment), again a minute later. Of several processes on one
        database only the purge lease's holder purges, once an hour whichever it is; the others
        look again every minute, to take over from a holder that stopped."""
        now = self._clock()
        if self._next_housekeeping is not None and now < self._next_housekeeping:
            return None
        self._next_housekeeping = now + HOUSEKEEPING_RETRY
        lease = self.purge_lease
        if not (lease.holding() or lease.keep()) or not lease.due(HOUSEKEEPING_EVERY):
            return None
        report = self._housekeeping()
        lease.done(now)
        log.info(
            "purged: %d hold links, %d codes freed, %d other records",
            report.unlinked_holds,
            report.freed_codes,
            report.forgotten,
        )
        self._next_housekeeping = now + HOUSEKEEPING_EVERY
        return report

    def wake(self) -> None:
        """Start the next pass now (something was just queued, here or in another process)."""
        self._wake.set()

    def _heard(self) -> None:
        """Another process queued something (or the listener has just started)."""
        self.listening.set()
        self.wake()

    def run_forever(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        """Passes until ``stop`` is set (then the row being sent is finished, and nothing else
        is started: set it, then `wake`); rows queued by other processes wake it too, and
        are found within ``poll_seconds`` should their wake-up be lost."""
        tasks = (
            (partial(self.run_once, stop=stop), "worker pass"),
            (self.housekeep_if_due, "purge"),
        )
        syncing = None
        if self._sync is not None:  # its own thread: a long sync must not hold up the slips
            syncing = threading.Thread(
                target=self._sync_forever, args=(self._sync, stop), name="ils-sync", daemon=True
            )
            syncing.start()
        listening = self._wakeup.listen(self._heard, stop)
        leasing = self._leases.start(stop)
        beating = self.heartbeat.start(stop)
        while not stop.is_set():
            # Each on its own: a printer queue that keeps failing must not stop retention.
            for task, name in tasks:
                if stop.is_set():
                    break
                try:
                    task()
                except Exception as exc:  # a database hiccup must not end the worker
                    log.error("%s failed: %s", name, unexpected(exc))
            self._wake.wait(poll_seconds)
            self._wake.clear()
        for thread in (syncing, listening, leasing, beating):
            if thread is not None:
                thread.join(timeout=5)

    def _sync_forever(self, sync: IlsSync, stop: threading.Event) -> None:
        """The ILS sync every [ils] sync_minutes, from the first minute on; the holds made in
        its last minute are left to the next one. Only the sync lease's holder syncs, and it
        stops as soon as it no longer holds it; the others look again every RENEW_EVERY."""
        lease = self.sync_lease
        wait = SYNC_FIRST_DELAY
        while not stop.wait(wait.total_seconds()):
            wait = min(self._sync_every, leases.RENEW_EVERY)
            try:
                if (lease.holding() or lease.keep()) and lease.due(self._sync_every):
                    started = self._clock()
                    sync.run(settle=True, stop=_Stopping(stop, lease))
                    lease.done(started)
            except Exception as exc:  # the database away for a moment: try again next time
                log.error("ILS sync failed: %s", unexpected(exc))


@dataclass(frozen=True)
class _Stopping:
    """Set once the worker stops or its process no longer holds the lease."""

    stop: threading.Event
    lease: Lease

    def is_set(self) -> bool:
        return self.stop.is_set() or not self.lease.holding()
