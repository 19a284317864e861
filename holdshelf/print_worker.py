"""Sends queued slips to the printers, off the request path, and never loses one.

A job is leased to one worker at a time (several app servers may each run a worker); it is
marked sent only when the printer took it (and, where it can answer, said it is still fine).
A failure keeps the job queued with its attempts and last error, retried with backoff; a worker
that crashes mid-job loses only its lease. A slip whose hold ended meanwhile is dropped, not
printed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from holdshelf.domain.codes import ShelfCode
from holdshelf.domain.holds import HoldStatus
from holdshelf.domain.slips import Slip
from holdshelf.errors import ConfigError, HoldshelfError
from holdshelf.settings import Settings
from holdshelf.storage.models import Hold, PrintJob

log = logging.getLogger(__name__)

FIRST_RETRY = dt.timedelta(seconds=5)
LONGEST_RETRY = dt.timedelta(minutes=5)
LEASE = dt.timedelta(minutes=2)


def utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def retry_delay(attempts: int) -> dt.timedelta:
    """5 s, 10 s, 20 s ... up to 5 minutes: a printer back from lunch prints within minutes."""
    return min(LONGEST_RETRY, FIRST_RETRY * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class JobView:
    """A print job as staff see it: which slip, where, and what went wrong."""

    id: int
    branch: str
    printer: str
    code: ShelfCode
    kind: str
    status: str
    attempts: int
    last_error: str | None
    created_at: dt.datetime
    next_attempt_at: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "branch": self.branch,
            "printer": self.printer,
            "code": self.code.display,
            "kind": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "created_at": self.created_at.isoformat(timespec="seconds") + "Z",
            "next_attempt_at": self.next_attempt_at.isoformat(timespec="seconds") + "Z",
        }


@dataclass
class PassReport:
    sent: int = 0
    dropped: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # printer -> last error


class PrintWorker:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        clock: Callable[[], dt.datetime] | None = None,
        connect: Callable[..., Any] | None = None,
    ) -> None:
        from holdshelf.printers.connections import connect as default_connect

        self.settings = settings
        self._sessions = sessions
        self._clock = clock or settings.now
        self._connect = connect or default_connect
        self._wake = threading.Event()

    # -- what staff see -----------------------------------------------------------------------

    def jobs(self, *, include_finished: bool = False) -> list[JobView]:
        query = select(PrintJob).order_by(PrintJob.id)
        if not include_finished:
            query = query.where(PrintJob.status == "queued")
        with self._sessions() as session:
            return [self._view(job) for job in session.scalars(query)]

    def _view(self, job: PrintJob) -> JobView:
        branch = self.settings.branches.get(job.branch)
        return JobView(
            id=job.id,
            branch=job.branch,
            printer=branch.printer if branch else "(branch no longer configured)",
            code=ShelfCode(job.code),
            kind=job.kind,
            status=job.status,
            attempts=job.attempts,
            last_error=job.last_error,
            created_at=job.created_at,
            next_attempt_at=job.next_attempt_at,
        )

    # -- sending ------------------------------------------------------------------------------

    def run_once(self, *, ignore_backoff: bool = False) -> PassReport:
        """Send every due job once. A printer that fails is not tried again in this pass;
        ``ignore_backoff`` also tries jobs still waiting for their retry time."""
        report = PassReport()
        tried: set[int] = set()
        while (job := self._claim(ignore_backoff, report, tried)) is not None:
            tried.add(job.id)
            error = self._send(job)
            self._finish(job.id, error)
            if error is None:
                report.sent += 1
            else:
                report.failed[self._view(job).printer] = error
        return report

    def wake(self) -> None:
        """Start the next pass now (a slip was just queued in this process)."""
        self._wake.set()

    def run_forever(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        """The loop ``holdshelf worker`` and the web server run until ``stop`` is set. Jobs
        queued by other processes are found within ``poll_seconds``."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # a database hiccup must not end the worker; it retries
                log.exception("print worker pass failed")
            self._wake.wait(poll_seconds)
            self._wake.clear()

    def _claim(self, ignore_backoff: bool, report: PassReport, tried: set[int]) -> PrintJob | None:
        """Lease the oldest due job, dropping jobs of holds that have ended on the way."""
        now = utc(self._clock())
        while True:
            with self._sessions.begin() as session:
                query = select(PrintJob).where(
                    PrintJob.status == "queued",
                    (PrintJob.leased_until.is_(None)) | (PrintJob.leased_until < now),
                )
                if tried:
                    query = query.where(PrintJob.id.not_in(tried))
                if not ignore_backoff:
                    query = query.where(PrintJob.next_attempt_at <= now)
                failed_branches = [
                    b.id for b in self.settings.branches.values() if b.printer in report.failed
                ]
                if failed_branches:
                    query = query.where(PrintJob.branch.not_in(failed_branches))
                job = session.scalar(
                    query.order_by(PrintJob.id).limit(1).with_for_update(skip_locked=True)
                )
                if job is None:
                    return None
                if not self._hold_active(session, job):
                    job.status, job.finished_at = "dropped", now
                    job.last_error = "the hold ended before its slip was printed"
                    report.dropped += 1
                    continue
                job.attempts += 1
                job.leased_until = now + LEASE
                return job  # detached after the commit, still readable (expire_on_commit off)

    @staticmethod
    def _hold_active(session: Session, job: PrintJob) -> bool:
        return (
            session.scalar(
                select(Hold.id).where(
                    Hold.branch == job.branch,
                    Hold.code == job.code,
                    Hold.status == HoldStatus.READY.value,
                )
            )
            is not None
        )

    def _send(self, job: PrintJob) -> str | None:
        """None when the printer took the slip, else what went wrong (for staff)."""
        from holdshelf.printers.connections import PrinterError
        from holdshelf.printers.slips import RenderedSlip

        try:
            printer = self.settings.printer_of(job.branch)
            rendered = RenderedSlip(Slip.from_payload(json.loads(job.payload)), printer)
            connection = self._connect(printer, self.settings.instance_dir)
            connection.send(rendered.escpos, preview=rendered.png, label=job.code)
        except (PrinterError, ConfigError) as exc:
            log.warning("print job %s not printed: %s", job.id, exc)
            return str(exc)[:300]
        except Exception as exc:
            log.exception("print job %s failed", job.id)
            return f"internal error ({type(exc).__name__})"
        log.info("print job %s sent to %s", job.id, printer.name)
        return None

    def _finish(self, job_id: int, error: str | None) -> None:
        now = utc(self._clock())
        with self._sessions.begin() as session:
            job = session.get(PrintJob, job_id)
            if job is None:
                return
            job.leased_until = None
            if error is None:
                job.status, job.finished_at, job.last_error = "sent", now, None
            else:
                job.last_error = error
                job.next_attempt_at = now + retry_delay(job.attempts)


def send_test_slip(settings: Settings, name: str) -> str:
    """Print a test slip on printer ``name`` now, not through the queue; returns where it went.
    Its code, TEST-TEST, can never be a valid shelf code: scanning it finds no hold."""
    from holdshelf.printers.connections import PrinterError, connect
    from holdshelf.printers.slips import RenderedSlip

    printer = settings.printer(name)
    test = Slip(
        f"Printer test: {name}", ShelfCode("TESTTEST"), settings.now().date(), False, test=True
    )
    rendered = RenderedSlip(test, printer)
    try:
        connect(printer, settings.instance_dir).send(
            rendered.escpos, preview=rendered.png, label="test"
        )
    except PrinterError as exc:
        raise PrinterUnavailable(f"printer {name}: {exc}") from None
    return printer.target


class PrinterUnavailable(HoldshelfError):
    """A direct print (the test slip) did not reach the printer."""
