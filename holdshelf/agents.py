"""Branch print agents: slips for printers the server cannot reach, fetched by the branch.

A branch whose printer is ``type = "agent"`` keeps its slips in the print queue like any other;
the local print worker leaves them alone (holdshelf.print_worker) and the branch's agent
(``holdshelf print-agent``, holdshelf.print_agent) leases them over HTTPS, one at a time, with
a token that may do nothing else (scope ``print-agent``, one branch).

The outbox rules are the local worker's (holdshelf.outbox, holdshelf.print_worker):

- a lease lasts LEASE; a job not acknowledged by then returns to the queue;
- the agent commits the attempt's phase before the first byte leaves (``sending``, with the
  process ID the job carries) and when the printer has read it all and said it was online
  (``accepted``); a job leased again after ``sending`` is rendered POSSIBLE DUPLICATE, one found
  ``accepted`` counts as printed and is not sent again;
- an acknowledged job is never sent again; acknowledging twice is harmless; a "printed" from
  an earlier lease still counts (the slip did print), a failure from one does not;
- a job whose hold has ended is dropped, not sent.

A job carries the slip rendered for the printer's configured profile (ESC/POS bytes): the slip's
allow-listed fields only, so nothing about a patron leaves the server.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from holdshelf.clock import Clock
from holdshelf.domain.holds import HoldStatus
from holdshelf.domain.slips import Slip
from holdshelf.errors import ConfigError, Conflict, InvalidInput, NotFound
from holdshelf.integrations import PRINT_AGENT, ApiClient
from holdshelf.outbox import LEASE, claim_order, closing
from holdshelf.print_worker import STALE_SLIP, PrinterTrouble, PrintWorker, process_id
from holdshelf.printers.config import AGENT
from holdshelf.settings import Settings
from holdshelf.storage.database import read_sessions
from holdshelf.storage.models import QUEUED, ApiToken, Delivery, Hold, PrintAgent, PrintJob
from holdshelf.storage.wakeup import NO_WAKEUP, Wakeup

LONGEST_WAIT = 25.0  # seconds a lease request may wait for a slip (under proxies' 30-60 s)
POLL_SECONDS = 1.0  # looked at this often while waiting, should a wake-up be lost
# Long polls hold a web server thread each (waitress runs 8): at most this many wait at once;
# the others are answered at once, empty, and the agent asks again a little later.
MOST_WAITING = 4
AGENT_SILENT = dt.timedelta(minutes=3)  # an agent quiet this long shows the desk's banner
PHASES = ("sending", "accepted", "waiting")  # "waiting": the printer has it; renew the lease
OUTCOMES = ("printed", "failed")
STATUS_CHARACTERS = 200


@dataclass(frozen=True)
class PrinterReport:
    """The printer's status as the agent saw it; ``ok`` False for a fault (off, paper out)."""

    ok: bool | None
    status: str

    @classmethod
    def from_json(cls, data: Any) -> PrinterReport | None:
        if not isinstance(data, dict):
            return None
        ok = data.get("ok")
        status = data.get("status", "")
        if (ok is not None and not isinstance(ok, bool)) or not isinstance(status, str):
            raise InvalidInput("printer must be {ok: true|false|null, status: text}")
        printable = "".join(c if c.isprintable() else " " for c in status)
        return cls(ok, printable[:STATUS_CHARACTERS])


@dataclass(frozen=True)
class AgentJob:
    """One leased slip, as the agent gets it."""

    lease: str
    job_id: int
    escpos: bytes
    process_id: str
    possible_duplicate: bool
    lease_seconds: int


@dataclass(frozen=True)
class AgentView:
    """An agent as the Printers page shows it."""

    name: str
    branch: str
    printer: str
    revoked: bool
    last_seen_at: dt.datetime | None
    printer_status: str
    printer_ok: bool | None
    queued: int


def parse_lease(lease: str) -> tuple[int, int]:
    """A lease id is "<job id>.<attempt>": the attempt names the lease, so an old lease's
    word is told from the current one's."""
    job, _, attempt = lease.partition(".")
    if not (job.isdigit() and attempt.isdigit() and len(lease) < 40):
        raise InvalidInput("not a lease id")
    return int(job), int(attempt)


class PrintAgents:
    """The server's side of the branch print agents."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        clock: Clock,
        wakeup: Wakeup = NO_WAKEUP,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._reads = read_sessions(sessions)
        self._clock = clock
        self._wakeup = wakeup
        self._changed = threading.Condition()
        self._generation = 0  # counts wake-ups, so one heard between looks is not missed
        self._listening = False
        self._stop = threading.Event()
        self._waiting = threading.BoundedSemaphore(MOST_WAITING)

    # -- what the agent asks ------------------------------------------------------------------

    def lease(
        self, client: ApiClient, wait: float, printer: PrinterReport | None = None
    ) -> AgentJob | None:
        """The branch's next slip, leased; waits up to ``wait`` seconds for one to be queued."""
        branch = self._branch_of(client)
        self._seen(client, branch, printer)
        job = self._lease_one(branch)
        if job is not None or wait <= 0 or not self._waiting.acquire(blocking=False):
            return job
        try:
            return self._wait_for_job(branch, min(wait, LONGEST_WAIT))
        finally:
            self._waiting.release()

    def set_phase(self, client: ApiClient, lease: str, phase: str) -> int:
        """Record how far the agent got with a lease (and renew it); returns the lease's
        seconds. A lease that another has taken since is refused: the agent must not print."""
        if phase not in PHASES:
            raise InvalidInput(f"phase must be one of {', '.join(PHASES)}", field="phase")
        job_id, attempt = parse_lease(lease)
        now = self._clock()
        with self._sessions.begin() as session:
            row = self._job(session, client, job_id)
            if row.status != Delivery.QUEUED or row.attempts != attempt:
                raise Conflict("this lease has ended: do not print the slip")
            if phase == "sending":
                row.phase, row.process_id = phase, process_id(row.id, row.attempts)
            elif phase == "accepted":
                row.phase = phase
            row.leased_until = now + LEASE
        return int(LEASE.total_seconds())

    def acknowledge(
        self,
        client: ApiClient,
        lease: str,
        outcome: str,
        error: str = "",
        printer: PrinterReport | None = None,
    ) -> str:
        """Record a lease's outcome: "recorded", "already recorded" (a second word for a
        finished job: harmless), or "stale" (a failure reported for a lease taken over)."""
        if outcome not in OUTCOMES:
            raise InvalidInput(f"outcome must be one of {', '.join(OUTCOMES)}", field="outcome")
        job_id, attempt = parse_lease(lease)
        branch = self._branch_of(client)
        now = self._clock()
        with self._sessions.begin() as session:
            self._record_seen(session, client, branch, printer, now)
            row = self._job(session, client, job_id)
            if row.status != Delivery.QUEUED:
                return "already recorded"
            if outcome == "printed":  # from any lease: the slip did print
                _finish(row, Delivery.SENT, None, now)
                return "recorded"
            if row.attempts != attempt:
                return "stale"
            # The agent backs off by itself (it knows when its printer is back): due at once.
            row.leased_until, row.next_attempt_at = None, now
            row.last_error = (error or "the print agent could not print it")[:300]
            return "recorded"

    def close(self) -> None:
        """Stop the wake-up listener and release waiting requests (the server is stopping)."""
        self._stop.set()
        self._heard()

    # -- what staff see -------------------------------------------------------------------------

    def views(self) -> list[AgentView]:
        with self._reads() as session:
            tokens = session.scalars(
                select(ApiToken).where(ApiToken.scope == PRINT_AGENT).order_by(ApiToken.name)
            ).all()
            seen = {row.token_id: row for row in session.scalars(select(PrintAgent))}
            queued = dict(
                session.execute(
                    select(PrintJob.branch, func.count())
                    .where(PrintJob.status == Delivery.QUEUED)
                    .group_by(PrintJob.branch)
                ).all()
            )
        views = []
        for token in tokens:
            branch, agent = token.branches, seen.get(token.id)
            configured = self.settings.branches.get(branch)
            views.append(
                AgentView(
                    name=token.name,
                    branch=branch,
                    printer=configured.printer if configured else "(branch not configured)",
                    revoked=token.revoked_at is not None,
                    last_seen_at=agent.last_seen_at if agent else None,
                    printer_status=agent.printer_status if agent else "",
                    printer_ok=agent.printer_ok if agent else None,
                    queued=queued.get(branch, 0),
                )
            )
        return views

    def is_agent_branch(self, branch_id: str) -> bool:
        branch = self.settings.branches.get(branch_id)
        return branch is not None and self.settings.printers[branch.printer].type == AGENT

    def trouble(self, branch_id: str) -> PrinterTrouble | None:
        """The desk's banner for a branch printed by an agent: the agent silent for more than
        AGENT_SILENT (with slips waiting, or ever seen), its printer reporting a fault, or a
        slip waiting more than a minute."""
        now = self._clock()
        printer = self.settings.branch(branch_id).printer
        queued = (PrintJob.branch == branch_id, PrintJob.status == Delivery.QUEUED)
        with self._reads() as session:
            waiting = session.scalar(select(func.count()).where(*queued)) or 0
            stale = session.scalar(
                select(func.count()).where(
                    *queued,
                    PrintJob.last_error.is_not(None) | (PrintJob.created_at <= now - STALE_SLIP),
                )
            )
            last_error = session.scalar(
                select(PrintJob.last_error)
                .where(*queued, PrintJob.last_error.is_not(None))
                .order_by(PrintJob.id.desc())
                .limit(1)
            )
            agent = session.scalar(
                select(PrintAgent)
                .where(PrintAgent.branch == branch_id)
                .order_by(PrintAgent.last_seen_at.desc())
                .limit(1)
            )
        if agent is None or now - agent.last_seen_at > AGENT_SILENT:
            if agent is None and not waiting:
                return None
            return PrinterTrouble(printer, waiting, _silence(agent, now))
        if agent.printer_ok is False:
            return PrinterTrouble(printer, waiting, agent.printer_status or "printer fault")
        if stale:
            return PrinterTrouble(printer, waiting, last_error or "waiting for the print agent")
        return None

    # -- inside -----------------------------------------------------------------------------------

    def _branch_of(self, client: ApiClient) -> str:
        if client.scope != PRINT_AGENT or len(client.branches) != 1:
            raise ConfigError("not a print agent token")
        (branch,) = client.branches
        if not self.is_agent_branch(branch):
            raise ConfigError(f"branch {branch} does not print through an agent printer")
        return branch

    def _job(self, session: Session, client: ApiClient, job_id: int) -> PrintJob:
        row = session.get(PrintJob, job_id)
        if row is None or row.branch not in client.branches:  # another branch's: not found
            raise NotFound("no such print job for this agent")
        return row

    def _lease_one(self, branch: str) -> AgentJob | None:
        """Lease the branch's first due slip in claim order, settling on the way those whose
        hold ended (dropped) and those a printer had accepted (counted as printed)."""
        now = self._clock()
        printer = self.settings.printer_of(branch)
        free = PrintJob.leased_until.is_(None) | (PrintJob.leased_until < now)
        query = (
            select(PrintJob)
            .where(QUEUED, free, PrintJob.next_attempt_at <= now, PrintJob.branch == branch)
            .order_by(*claim_order(PrintJob))
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        from holdshelf.printers.slips import RenderedSlip

        with self._sessions.begin() as session:
            while (row := session.scalar(query)) is not None:
                if not _hold_active(session, row):
                    _finish(row, Delivery.DROPPED, "the hold ended before it was sent", now)
                    continue
                if row.phase == "accepted":  # the printer had read it all and was online
                    _finish(row, Delivery.SENT, None, now)
                    continue
                row.attempts += 1
                row.leased_until = now + LEASE
                duplicate = row.phase == "sending"  # the last lease may have printed it
                slip = replace(
                    Slip.from_payload(json.loads(row.payload)), possible_duplicate=duplicate
                )
                return AgentJob(
                    lease=f"{row.id}.{row.attempts}",
                    job_id=row.id,
                    escpos=RenderedSlip(slip, printer).escpos,
                    process_id=process_id(row.id, row.attempts),
                    possible_duplicate=duplicate,
                    lease_seconds=int(LEASE.total_seconds()),
                )
        return None

    def _wait_for_job(self, branch: str, wait: float) -> AgentJob | None:
        self._listen()
        deadline = time.monotonic() + wait
        while not self._stop.is_set():
            with self._changed:
                generation = self._generation
            job = self._lease_one(branch)
            remaining = deadline - time.monotonic()
            if job is not None or remaining <= 0:
                return job
            with self._changed:
                if self._generation == generation:
                    self._changed.wait(min(POLL_SECONDS, remaining))
        return None

    def _listen(self) -> None:
        with self._changed:
            if self._listening:
                return
            self._listening = True
        self._wakeup.listen(self._heard, self._stop)

    def _heard(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def _seen(self, client: ApiClient, branch: str, printer: PrinterReport | None) -> None:
        with self._sessions.begin() as session:
            self._record_seen(session, client, branch, printer, self._clock())

    @staticmethod
    def _record_seen(
        session: Session,
        client: ApiClient,
        branch: str,
        printer: PrinterReport | None,
        now: dt.datetime,
    ) -> None:
        """Upsert the agent's row; two first requests at once must not collide (a savepoint
        around the insert, then the update the loser makes)."""
        values: dict[str, Any] = {"branch": branch, "last_seen_at": now}
        if printer is not None:
            values.update(printer_ok=printer.ok, printer_status=printer.status)
        mine = update(PrintAgent).where(PrintAgent.token_id == client.id).values(**values)
        if session.execute(mine).rowcount:
            return
        try:
            with session.begin_nested():
                session.add(PrintAgent(token_id=client.id, **{"printer_status": "", **values}))
        except IntegrityError:
            session.execute(mine)


def _hold_active(session: Session, row: PrintJob) -> bool:
    found = session.scalar(
        select(Hold.id).where(
            Hold.branch == row.branch, Hold.code == row.code, Hold.status == HoldStatus.READY.value
        )
    )
    return found is not None


def _finish(row: PrintJob, status: Delivery, error: str | None, now: dt.datetime) -> None:
    """As the print worker closes a row (holdshelf.outbox)."""
    erased = dict.fromkeys(PrintWorker.erased_when_finished)
    for name, value in {**closing(status, error, now), **erased}.items():
        setattr(row, name, value)


def _silence(agent: PrintAgent | None, now: dt.datetime) -> str:
    if agent is None:
        return "no print agent has been in touch (is the agent PC on and running?)"
    minutes = int((now - agent.last_seen_at).total_seconds() // 60)
    return f"its print agent has not been in touch for {minutes} minutes (is the agent PC on?)"
