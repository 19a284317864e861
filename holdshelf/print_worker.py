"""Sends queued slips to the printers (see holdshelf.outbox for leases and retries).

A slip is marked sent only when the printer says so: its process ID response (GS ( H) where
the printer has one, else its answer to the status requests after the slip (it read every
byte and is online), else the device took the bytes. Printer failures are always temporary:
the slip waits for the printer.

How far each attempt got is committed before the paper can move, so a worker that dies, or a
connection that drops, leaves a record a later attempt reads (``PrintJob.phase``):

- no phase: nothing of the slip went out; it is simply sent (again).
- ``sending``: its bytes had started to leave and the printer has not said it printed it. The
  printer cannot be asked afterwards which slips it printed, so the slip is sent again, marked
  POSSIBLE DUPLICATE: at least once, and a second copy says what it is.
- ``accepted``: the printer had read every byte and said it was online, and the worker was
  waiting for the process ID: counted as printed, not sent again (what "sent" meant for every
  printer before process IDs).

A printer that stops answering on an open connection (it stopped reading: cover, paper, jam)
keeps the slip; the worker keeps the connection, skips that printer, and asks the connection
again at each pass, for up to HOLD_LIMIT: the slip prints when the printer is freed and is not
sent a second time.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, bindparam, func, select, update

from holdshelf.domain.codes import ShelfCode
from holdshelf.domain.slips import Slip
from holdshelf.errors import ConfigError, HoldshelfError
from holdshelf.outbox import DELIVERED, LEASE, OutboxWorker, Outcome, PassReport
from holdshelf.settings import Settings
from holdshelf.storage.models import Delivery, PrintJob

if TYPE_CHECKING:
    from holdshelf.printers.connections import Held

log = logging.getLogger(__name__)

HOLD_LIMIT = 15 * 60.0  # seconds a printer may keep a slip on an open connection, unprinted
PROCESS_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
AGENT_PRINTS = "printed by its branch print agent"
WAITING = "the printer has the slip and has not said it printed it yet (waiting for it)"


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
            "created_at": f"{self.created_at.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}",
            "next_attempt_at": f"{self.next_attempt_at.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}",
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


def process_id(job_id: int, attempt: int) -> str:
    """Four characters naming one attempt at one job: a later attempt's answer is never
    taken for an earlier one's."""
    number = (job_id * 8 + attempt % 8) % len(PROCESS_ID_ALPHABET) ** 4
    digits = []
    for _ in range(4):
        number, digit = divmod(number, len(PROCESS_ID_ALPHABET))
        digits.append(PROCESS_ID_ALPHABET[digit])
    return "".join(reversed(digits))


@dataclass
class HeldSlip:
    """A slip whose printer has it on a connection this worker keeps."""

    connection: Held
    route: str
    accepted_recorded: bool


class PrintWorker(OutboxWorker):
    """Sends queued slips to the branch printers."""

    model = PrintJob
    noun = "print job"
    erased_when_finished = ("phase",)  # printed or dropped: no attempt is in flight any more

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: dict[int, HeldSlip] = {}  # job id -> the connection its printer holds
        # PostgreSQL commits a lone UPDATE by itself: one round trip per phase instead of
        # BEGIN, UPDATE and COMMIT, up to twice per slip (SQLite has no round trips to save).
        engine = self._engine
        self._committing_alone = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else None
        )
        jobs = PrintJob.__table__
        this_job = update(jobs).where(jobs.c.id == bindparam("job_id"))
        self._phase = this_job.values(phase=bindparam("new_phase"))
        self._phase_and_pid = this_job.values(
            phase=bindparam("new_phase"), process_id=bindparam("new_pid")
        )

    def route(self, row: PrintJob) -> str:
        branch = self.settings.branches.get(row.branch)
        return branch.printer if branch else "(branch no longer configured)"

    def skip_routes(self, query: Select[Any], routes: set[str]) -> Select[Any]:
        branches = [b.id for b in self.settings.branches.values() if b.printer in routes]
        return query.where(PrintJob.branch.not_in(branches))

    def deliver(self, row: PrintJob) -> Outcome:
        from holdshelf.printers.connections import Attempt, PrinterError, connect
        from holdshelf.printers.slips import RenderedSlip

        if row.phase == "accepted":  # a worker died (or lost the line) waiting for the answer
            log.info("print job %s: the printer had read all of it; counted as printed", row.id)
            return DELIVERED
        try:
            printer = self.settings.printer_of(row.branch)
            slip = Slip.from_payload(json.loads(row.payload))
            # The last attempt may have printed: the printer could not tell, so say it.
            slip = replace(slip, possible_duplicate=row.phase == "sending")
            rendered = RenderedSlip(slip, printer)
            pid = process_id(row.id, row.attempts)
            attempt = Attempt(
                pid,
                on_sending=partial(self._set_phase, row.id, "sending", pid),
                on_accepted=partial(self._set_phase, row.id, "accepted"),
            )
            held = connect(printer, self.settings.instance_dir).send(
                rendered.escpos, preview=rendered.png, label=row.code, attempt=attempt
            )
        except PrinterError as exc:
            if exc.accepted:  # it read the whole slip and was online: it prints it
                log.info("print job %s sent to %s; then: %s", row.id, printer.name, exc)
                return DELIVERED
            log.warning("print job %s not printed: %s", row.id, exc)
            return Outcome(str(exc))  # printers come back: retried, never given up
        except ConfigError as exc:
            log.warning("print job %s not printed: %s", row.id, exc)
            return Outcome(str(exc))
        if held is not None:
            self._held[row.id] = HeldSlip(held, printer.name, held.accepted)
            log.info("print job %s: %s holds it, unconfirmed; waiting", row.id, printer.name)
            return Outcome(WAITING, hold=True)
        log.info("print job %s sent to %s", row.id, printer.name)
        return DELIVERED

    def run_once(self, **kwargs: Any) -> PassReport:
        report = super().run_once(**kwargs)
        for name in self._agent_printers():  # skipped, not failed (see before_pass)
            if report.failed.get(name) == AGENT_PRINTS:
                del report.failed[name]
        return report

    def _agent_printers(self) -> list[str]:
        return [name for name, p in self.settings.printers.items() if p.type == "agent"]

    def before_pass(self, report: PassReport) -> None:
        """Ask every held connection whether its slip has printed; a printer still holding
        one is skipped for this pass (its next slip would only queue behind it). An agent
        printer's slips are skipped too: its branch print agent takes them (holdshelf.agents)."""
        report.failed.update(dict.fromkeys(self._agent_printers(), AGENT_PRINTS))
        for job_id, held in list(self._held.items()):
            outcome = self._settle(job_id, held)
            if outcome is None:
                self._renew_lease(job_id)
                report.failed[held.route] = WAITING
                continue
            self._record(job_id, outcome)  # if this fails, the next pass settles it again
            del self._held[job_id]
            if outcome.delivered:
                report.sent += 1
            else:
                report.failed[held.route] = outcome.error or ""

    def _settle(self, job_id: int, held: HeldSlip) -> Outcome | None:
        """The outcome of a held slip, or None while the printer still has it unprinted."""
        from holdshelf.printers.connections import PrinterError

        connection = held.connection
        try:
            printed = connection.wait(0)
        except PrinterError as exc:
            log.warning("print job %s: %s", job_id, exc)
            return DELIVERED if exc.accepted else Outcome(str(exc))
        if printed:
            log.info("print job %s printed (the printer says so)", job_id)
            return DELIVERED
        if connection.accepted and not held.accepted_recorded:
            self._set_phase(job_id, "accepted")
            held.accepted_recorded = True
        if time.monotonic() - connection.since > HOLD_LIMIT:
            connection.close()
            if connection.accepted:
                return DELIVERED
            minutes = round(HOLD_LIMIT / 60)
            return Outcome(f"the printer kept the slip {minutes} minutes without printing it")
        return None

    def _set_phase(self, job_id: int, phase: str, pid: str | None = None) -> None:
        """Commit how far the attempt got, before the printer can act on it."""
        statement = self._phase if pid is None else self._phase_and_pid
        params = {"job_id": job_id, "new_phase": phase, "new_pid": pid}
        if self._committing_alone is not None:
            with self._committing_alone.connect() as connection:
                connection.execute(statement, params)
            return
        with self._engine.begin() as connection:
            connection.execute(statement, params)

    def _renew_lease(self, job_id: int) -> None:
        until = self._clock() + LEASE
        with self._sessions.begin() as session:
            session.execute(
                update(PrintJob).where(PrintJob.id == job_id).values(leased_until=until)
            )

    def trouble(self, branch_id: str) -> PrinterTrouble | None:
        """The branch's printing trouble, if its printer failed a slip or a slip has waited
        more than a minute: what the desk's banner says."""
        now = self._clock()
        queued = (PrintJob.branch == branch_id, PrintJob.status == Delivery.QUEUED)
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
            query = query.where(PrintJob.status == Delivery.QUEUED)
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


def send_test_slip(settings: Settings, name: str, today: dt.date) -> str:
    """Print a test slip on printer ``name`` now, not through the queue; returns where it went.
    Its code, TEST-TEST, can never be a valid shelf code: scanning it finds no hold."""
    from holdshelf.printers.connections import PrinterError, connect
    from holdshelf.printers.slips import RenderedSlip

    printer = settings.printer(name)
    test = Slip(f"Printer test: {name}", ShelfCode("TESTTEST"), today, False, test=True)
    rendered = RenderedSlip(test, printer)
    try:
        held = connect(printer, settings.instance_dir).send(
            rendered.escpos, preview=rendered.png, label="test"
        )
    except PrinterError as exc:
        raise PrinterUnavailable(f"printer {name}: {exc}") from None
    if held is not None:  # it has the slip; a test slip is not followed further
        held.close()
    return printer.target


class PrinterUnavailable(HoldshelfError):
    """A direct print (the test slip) did not reach the printer."""
