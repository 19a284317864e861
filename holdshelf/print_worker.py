"""Sends queued slips to the printers (see holdshelf.outbox for leases and retries).

A slip is marked sent only when the printer took it and, where it can answer, said it is
still fine afterwards. Printer failures are always temporary: the slip waits for the printer.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select

from holdshelf.domain.codes import ShelfCode
from holdshelf.domain.slips import Slip
from holdshelf.errors import ConfigError, HoldshelfError
from holdshelf.outbox import DELIVERED, OutboxWorker, Outcome
from holdshelf.settings import Settings
from holdshelf.storage.database import stored_time
from holdshelf.storage.models import PrintJob

log = logging.getLogger(__name__)


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


# A slip that waited longer than this has a printer or worker problem staff should hear about.
STALE_SLIP = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class PrinterTrouble:
    """Why a branch's slips are not printing: how many wait, and the printer's last error
    (None when no attempt failed: the slips were never tried, so no worker is running)."""

    printer: str
    waiting: int
    error: str | None


class PrintWorker(OutboxWorker):
    """Sends queued slips to the branch printers."""

    model = PrintJob
    noun = "print job"

    def route(self, row: PrintJob) -> str:
        branch = self.settings.branches.get(row.branch)
        return branch.printer if branch else "(branch no longer configured)"

    def skip_routes(self, query: Select[Any], routes: set[str]) -> Select[Any]:
        branches = [b.id for b in self.settings.branches.values() if b.printer in routes]
        return query.where(PrintJob.branch.not_in(branches))

    def deliver(self, row: PrintJob) -> Outcome:
        from holdshelf.printers.connections import PrinterError, connect
        from holdshelf.printers.slips import RenderedSlip

        try:
            printer = self.settings.printer_of(row.branch)
            rendered = RenderedSlip(Slip.from_payload(json.loads(row.payload)), printer)
            connect(printer, self.settings.instance_dir).send(
                rendered.escpos, preview=rendered.png, label=row.code
            )
        except (PrinterError, ConfigError) as exc:
            log.warning("print job %s not printed: %s", row.id, exc)
            return Outcome(str(exc))  # printers come back: retried, never given up
        log.info("print job %s sent to %s", row.id, printer.name)
        return DELIVERED

    def trouble(self, branch_id: str) -> PrinterTrouble | None:
        """The branch's printing trouble, if its printer failed a slip or a slip has waited
        more than a minute: what the desk's banner says."""
        now = stored_time(self._clock())
        queued = (PrintJob.branch == branch_id, PrintJob.status == "queued")
        with self._reads() as session:
            waiting = session.scalar(
                select(func.count()).where(
                    *queued,
                    PrintJob.last_error.is_not(None) | (PrintJob.created_at <= now - STALE_SLIP),
                )
            )
            if not waiting:
                return None
            error = session.scalar(
                select(PrintJob.last_error)
                .where(*queued, PrintJob.last_error.is_not(None))
                .order_by(PrintJob.id.desc())
                .limit(1)
            )
        branch = self.settings.branches.get(branch_id)
        return PrinterTrouble(branch.printer if branch else branch_id, waiting, error)

    def jobs(self, *, include_finished: bool = False) -> list[JobView]:
        """What staff see of the queue."""
        query = select(PrintJob).order_by(PrintJob.id)
        if not include_finished:
            query = query.where(PrintJob.status == "queued")
        with self._reads() as session:
            return [self._view(job) for job in session.scalars(query)]

    def _view(self, job: PrintJob) -> JobView:
        return JobView(
            id=job.id,
            branch=job.branch,
            printer=self.route(job),
            code=ShelfCode(job.code),
            kind=job.kind,
            status=job.status,
            attempts=job.attempts,
            last_error=job.last_error,
            created_at=job.created_at,
            next_attempt_at=job.next_attempt_at,
        )


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
