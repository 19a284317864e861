"""The worker takes up slips fast: woken by other processes, claiming through its index, desk
slips ahead of an import's.

Every test runs on SQLite and PostgreSQL (holdshelf.storage.wakeup, holdshelf.outbox).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, select
from sqlalchemy.exc import OperationalError

from holdshelf import outbox
from holdshelf.bootstrap import Holdshelf
from holdshelf.errors import Conflict
from holdshelf.outbox import PassReport, claim_order
from holdshelf.print_worker import PrintWorker
from holdshelf.service import HoldService
from holdshelf.settings import load_settings
from holdshelf.storage import wakeup
from holdshelf.storage.models import Notice, PrintJob, Priority
from tests.conftest import Clock
from tests.helpers.fake_printer import FakePrinter
from tests.helpers.plans import query_plan
from tests.test_notices import configure
from tests.test_printing import add_printer

MAIL = '[mail]\nhost = "127.0.0.1"\nport = 9\nsecurity = "none"\nsender = "holds@example.org"'
LONG_POLL = 30.0  # seconds: a slip that arrives sooner was woken, not polled for


@pytest.fixture
def printer() -> Iterator[FakePrinter]:
    fake = FakePrinter().start()
    yield fake
    fake.stop()


@pytest.fixture
def instance_dir(instance_dir: Path, printer: FakePrinter) -> Path:
    table = f'type = "network"\nhost = "127.0.0.1"\nport = {printer.port}\nprofile = "TM-T88V"'
    add_printer(instance_dir, "MAIN", table)
    configure(instance_dir, MAIL)  # notices are queued, never sent, in these tests
    return instance_dir


@contextmanager
def running_worker(instance: Path) -> Iterator[Holdshelf]:
    """A worker with the real clock, as `holdshelf worker` runs it but polling every 30 s,
    listening for other processes by the time this yields."""
    root = Holdshelf(load_settings(instance, environ={}))
    stop = threading.Event()
    thread = threading.Thread(target=root.worker.run_forever, args=(stop, LONG_POLL))
    thread.start()
    try:
        assert root.worker.listening.wait(10), "the worker never started listening"
        yield root
    finally:
        stop.set()
        root.worker.wake()
        thread.join(timeout=30)
        root.close()
    assert not thread.is_alive()


def ready_in_another_process(instance: Path, item: str, card: str) -> None:
    """`holdshelf ready` in a child process, as a script or cron job at the desk runs it."""
    script = Path(sys.executable).with_name("holdshelf")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLDSHELF_")}
    args = ["--instance", str(instance), "ready", "--branch", "MAIN", "--item", item]
    made = subprocess.run(
        [str(script), *args, "--patron", "-"],
        input=card,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr


def test_a_ready_in_another_process_wakes_the_worker(instance_dir: Path, printer, patrons):
    with running_worker(instance_dir):
        ready_in_another_process(instance_dir, "ITEM-1", patrons[0].card)
        committed = time.monotonic()
        printer.wait_for_connections(1, timeout=LONG_POLL - 10)
        assert time.monotonic() - committed < 5  # generous for a busy machine; the poll is 30
        ready_in_another_process(instance_dir, "ITEM-2", patrons[1].card)
        printer.wait_for_connections(2, timeout=5)


# -- what announces a queued row ---------------------------------------------------------------


class Recording(wakeup.Wakeup):
    def __init__(self) -> None:
        self.announced = 0
        self.committed_ = 0

    def announce(self, session) -> None:
        self.announced += 1

    def committed(self) -> None:
        self.committed_ += 1


@pytest.fixture
def recording(root: Holdshelf) -> Recording:
    heard = Recording()
    root.__dict__["wakeup"] = heard  # before the sessions are made, which install it
    return heard


def test_only_committed_transactions_that_queue_announce(
    recording: Recording, root: Holdshelf, patrons, clock: Clock
):
    service = root.service
    service.ready("MAIN", "ITEM-1", patrons[0].card)
    assert (recording.announced, recording.committed_) == (1, 1)
    with pytest.raises(Conflict):
        service.ready("MAIN", "ITEM-1", patrons[1].card)  # rolled back: nothing queued
    service.shelf("MAIN")  # reads
    root.worker.run_once()  # the worker's own writes queue nothing
    assert (recording.announced, recording.committed_) == (1, 1)
    requests = [service.hold_request("MAIN", f"BULK-{n}", patrons[n].card) for n in range(2, 6)]
    service.ready_many(requests)  # one transaction, a savepoint per row: announced once
    assert (recording.announced, recording.committed_) == (2, 2)


def test_a_dead_workers_socket_is_removed_and_a_live_one_poked(tmp_path: Path) -> None:
    folder = tmp_path / "db.wake"
    folder.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(folder / "dead.sock"))
    dead.close()  # killed: its file stays behind
    woken = threading.Event()
    stop = threading.Event()
    listening = wakeup.SocketWakeup(folder).listen(woken.set, stop)
    assert listening is not None
    assert woken.wait(5)  # at once: what was queued before it listened
    woken.clear()
    wakeup.SocketWakeup(folder).committed()  # another process's commit
    assert woken.wait(5)
    assert not (folder / "dead.sock").exists()
    stop.set()
    listening.join(timeout=5)
    assert list(folder.iterdir()) == []  # a worker that stops takes its socket along


def test_a_commit_wakes_its_own_processs_worker_without_a_datagram(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "db.wake"
    sockets = wakeup.SocketWakeup(folder)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    folder.mkdir()
    other.bind(str(folder / "other.sock"))  # another process's worker
    woken, stop = threading.Event(), threading.Event()
    listening = sockets.listen(woken.set, stop)
    assert listening is not None and woken.wait(5)
    woken.clear()
    poked: list[str] = []
    monkeypatch.setattr(sockets, "_poke", lambda address, _path: poked.append(address))
    sockets.committed()
    assert woken.is_set()  # at once, in this thread
    assert [address.rsplit("/", 1)[-1] for address in poked] == ["other.sock"]
    stop.set()
    listening.join(timeout=5)
    other.close()


# -- claiming ----------------------------------------------------------------------------------


def test_desk_slips_are_claimed_before_queued_bulk_ones(service, printer, clock, patrons):
    bulk = [service.hold_request("MAIN", f"BULK-{n}", patrons[n].card) for n in range(6)]
    imported = service.ready_many(bulk)
    desk = service.ready("MAIN", "DESK-1", patrons[10].card)
    worker = Holdshelf(service.settings, clock=clock, engine=service.engine).worker
    assert worker.prints.run_once().sent == 7
    printer.wait_for_connections(7)
    codes = [desk.code.display] + [outcome.entry.code.display for outcome in imported]
    assert [next(c for c in codes if c.encode() in slip) for slip in printer.slips] == codes


def test_imported_slips_and_notices_are_bulk(service: HoldService, patrons) -> None:
    request = service.hold_request("MAIN", "BULK-1", patrons[0].card, email=patrons[0].email)
    service.ready_many([request])
    service.ready("MAIN", "DESK-1", patrons[1].card, email=patrons[1].email)
    with service.sessions() as session:
        jobs = session.execute(select(PrintJob.code, PrintJob.priority).order_by(PrintJob.id))
        notices = session.execute(select(Notice.code, Notice.priority).order_by(Notice.id))
        assert [p for _, p in jobs] == [Priority.BULK, Priority.DESK]
        assert [p for _, p in notices] == [Priority.BULK, Priority.DESK]


def claim_statements(service: HoldService, clock: Clock, slips: int) -> list[tuple[str, object]]:
    """The claim SELECTs a pass of ``slips`` slips runs, with their parameters."""
    worker = Holdshelf(service.settings, clock=clock, engine=service.engine).worker.prints
    seen: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if "ORDER BY" in statement and "print_jobs.priority" in statement:
            seen.append((statement, parameters))

    event.listen(service.engine, "before_cursor_execute", record)
    try:
        assert worker.run_once().sent == slips
    finally:
        event.remove(service.engine, "before_cursor_execute", record)
    return seen


def test_the_claim_does_not_grow_and_uses_the_queued_rows_index(service, clock, patrons):
    for n in range(5):
        service.ready("MAIN", f"ITEM-{n}", patrons[n].card)
    claims = claim_statements(service, clock, 5)
    assert len(claims) >= 5
    assert len({statement for statement, _ in claims}) == 1  # no list of rows tried in it
    statement, parameters = claims[-1]
    text = query_plan(service.engine, statement, parameters)
    assert "ix_print_jobs_claim" in text, text
    assert "TEMP B-TREE" not in text and "Sort" not in text, text  # the index gives the order


def test_claim_order_is_the_indexed_order() -> None:
    index = next(i for i in PrintJob.__table__.indexes if i.name == "ix_print_jobs_claim")
    order = [c.key for c in claim_order(PrintJob)]
    assert [c.name for c in index.columns][: len(order)] == order


def test_a_pass_tries_a_failing_printers_slip_once(service, printer, clock, patrons) -> None:
    """Without a list of rows tried, a pass still ends: the route is skipped once it failed."""
    for n in range(3):
        service.ready("MAIN", f"ITEM-{n}", patrons[n].card)
    printer.stop()
    worker = Holdshelf(service.settings, clock=clock, engine=service.engine).worker.prints
    report = worker.run_once(ignore_backoff=True)
    assert report == PassReport(failed={"front-desk": report.failed["front-desk"]})
    with service.sessions() as session:
        attempts = list(session.scalars(select(PrintJob.attempts).order_by(PrintJob.id)))
    assert attempts == [1, 0, 0]


def test_no_wakeup_without_a_database_file() -> None:
    engine = create_engine("sqlite://")
    assert wakeup.for_engine(engine) is wakeup.NO_WAKEUP


def test_a_pass_goes_on_past_a_slip_whose_branch_is_gone(service, printer, clock, patrons):
    """A route that cannot be skipped (a branch taken out of the configuration) fails its slip
    once in a pass, which goes on to the slips after it."""
    service.ready("EAST", "ITEM-E", patrons[0].card)
    service.ready("MAIN", "ITEM-M", patrons[1].card)
    branches = {key: branch for key, branch in service.settings.branches.items() if key != "EAST"}
    settings = dataclasses.replace(service.settings, branches=branches)
    report = PrintWorker(settings, service.sessions, clock).run_once(ignore_backoff=True)
    assert (report.sent, list(report.failed)) == (1, ["(branch no longer configured)"])
    with service.sessions() as session:
        attempts = list(session.scalars(select(PrintJob.attempts).order_by(PrintJob.id)))
    assert attempts == [1, 1]


# -- draining: one transaction per slip --------------------------------------------------------


def worker_transactions(
    service: HoldService, worker: PrintWorker, **options: object
) -> tuple[PassReport, list[list[str]]]:
    """A pass of ``worker``, and the statements of each transaction it began (a lone
    statement committing itself counts as one)."""
    transactions: list[list[str]] = []

    def began(_connection) -> None:
        transactions.append([])

    def executed(_conn, _cursor, statement, _parameters, _context, _many) -> None:
        transactions[-1].append(statement)

    event.listen(service.engine, "begin", began)
    event.listen(service.engine, "before_cursor_execute", executed)
    try:
        report = worker.run_once(**options)  # type: ignore[arg-type]
    finally:
        event.remove(service.engine, "begin", began)
        event.remove(service.engine, "before_cursor_execute", executed)
    return report, transactions


def is_claim(statement: str) -> bool:
    return "ORDER BY" in statement and "print_jobs.priority" in statement


def is_phase(transaction: list[str]) -> bool:
    return len(transaction) == 1 and "SET phase=" in transaction[0]


def test_a_drain_commits_once_per_slip_besides_its_phases(service, clock, patrons) -> None:
    """Each slip's outcome is written in the transaction that claims the next one (the last
    one's with the claim that finds the queue empty): no transaction records a slip alone,
    and a slip costs one claiming transaction of three statements (the last outcome, one
    UPDATE; the claim, with the hold's check in it; the lease), plus its phases (one
    statement each)."""
    slips = 5
    for n in range(slips):
        service.ready("MAIN", f"ITEM-{n}", patrons[n].card)
    worker = Holdshelf(service.settings, clock=clock, engine=service.engine).worker.prints
    report, transactions = worker_transactions(service, worker)
    assert report.sent == slips
    look, *writes = transactions  # the pass first looks, in a read session, whether any is due
    assert len(look) == 1 and "LIMIT" in look[0] and not is_claim(look[0])
    claims = [t for t in writes if any(is_claim(s) for s in t)]
    phases = [t for t in writes if is_phase(t)]
    assert len(claims) == slips + 1, transactions
    assert len(claims) + len(phases) == len(writes), [t for t in writes if t not in claims]
    assert slips <= len(phases) <= 2 * slips  # `sending`, and `accepted` when it waits for it
    first, *middle, last = claims
    assert len(first) == 2  # the claim and the lease: nothing to record yet
    assert all(len(claim) == 3 for claim in middle), middle
    assert all(
        claim[0].startswith("UPDATE print_jobs SET") and "status=" in claim[0] for claim in middle
    )
    assert len(last) == 2  # the last outcome and the claim finding none
    assert not any("FROM holds" in s and not is_claim(s) for t in writes for s in t)
    with service.sessions() as session:
        rows = session.execute(select(PrintJob.status, PrintJob.leased_until, PrintJob.phase))
        assert set(rows) == {("sent", None, None)}


def test_a_printed_slip_is_recorded_before_the_next_is_sent(service, clock, patrons) -> None:
    """What the desk's print status shows: while slip N is being sent, every slip before it
    is recorded as sent, not left queued."""
    for n in range(4):
        service.ready("MAIN", f"ITEM-{n}", patrons[n].card)
    worker = Holdshelf(service.settings, clock=clock, engine=service.engine).worker.prints
    send = worker.deliver
    seen: list[list[str]] = []

    def deliver(row: PrintJob):
        with service.sessions() as session:
            statuses = session.scalars(select(PrintJob.status).order_by(PrintJob.id))
            seen.append(list(statuses))
        return send(row)

    worker.deliver = deliver  # type: ignore[method-assign]
    assert worker.run_once().sent == 4
    assert seen == [["queued"] * 4] + [["sent"] * n + ["queued"] * (4 - n) for n in range(1, 4)]
    assert [job.status for job in worker.jobs(include_finished=True)] == ["sent"] * 4


def test_a_stopped_pass_records_the_slip_it_sent(service, printer, clock, patrons) -> None:
    """Stop set while a slip is being sent: the pass ends with that slip recorded as sent
    (no claim follows to carry it), and the others stay queued, untouched."""
    for n in range(3):
        service.ready("MAIN", f"ITEM-{n}", patrons[n].card)
    worker = Holdshelf(service.settings, clock=clock, engine=service.engine).worker.prints
    send = worker.deliver
    stop = threading.Event()

    def deliver_then_stop(row: PrintJob):
        outcome = send(row)
        stop.set()  # Ctrl-C at `serve` while this slip was printing
        return outcome

    worker.deliver = deliver_then_stop  # type: ignore[method-assign]
    report, transactions = worker_transactions(service, worker, stop=stop)
    assert report.sent == 1 and worker.delivering is None
    assert not any(is_claim(s) for s in transactions[-1])  # recorded alone, nothing claimed
    with service.sessions() as session:
        rows = session.execute(
            select(
                PrintJob.status, PrintJob.attempts, PrintJob.leased_until, PrintJob.phase
            ).order_by(PrintJob.id)
        )
        assert list(rows) == [
            ("sent", 1, None, None),
            ("queued", 0, None, None),
            ("queued", 0, None, None),
        ]
    printer.wait_for_connections(1)
    assert len(printer.slips) == 1


def test_an_outcome_is_written_alone_when_its_claim_fails(
    service, printer, clock, patrons, monkeypatch
) -> None:
    """The transaction writing slip 1's outcome with the claim of slip 2 fails (a dropped
    connection): the outcome is written on its own, then slip 2 is claimed and sent."""
    for n in range(2):
        service.ready("MAIN", f"ITEM-{n}", patrons[n].card)
    worker = Holdshelf(service.settings, clock=clock, engine=service.engine).worker.prints
    monkeypatch.setattr(outbox, "RECORD_RETRY_SECONDS", 0.01)
    lease = worker._lease_first
    calls = []

    def fail_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OperationalError("SELECT ...", {}, Exception("server closed the connection"))
        return lease(*args, **kwargs)

    monkeypatch.setattr(worker, "_lease_first", fail_the_second)
    assert worker.run_once() == PassReport(sent=2)
    assert len(calls) == 4  # slip 1; failed; slip 2 (after slip 1 was written alone); none
    with service.sessions() as session:
        assert list(session.scalars(select(PrintJob.status))) == ["sent", "sent"]
    printer.wait_for_connections(2)
    assert len(printer.slips) == 2
