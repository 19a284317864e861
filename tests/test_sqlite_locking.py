"""SQLite's one write lock: reads never wait for it, and a slip's outcome is recorded even when
another process holds it for a while. Each test holds the lock for real, from a second
connection, as `holdshelf import` or another app server would."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from holdshelf import outbox
from holdshelf.accounts import Accounts
from holdshelf.bootstrap import Holdshelf
from holdshelf.print_worker import PrintWorker
from holdshelf.service import HoldService
from holdshelf.storage import database
from holdshelf.storage.models import PrintJob
from holdshelf.web import create_app
from tests.helpers.web import STAFF, post, sign_in

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# Short enough that a read waiting for the lock would fail the test quickly, not in 30 s.
BUSY_TIMEOUT_MS = 500


@pytest.fixture(autouse=True)
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", BUSY_TIMEOUT_MS)


def database_file(service: HoldService) -> Path:
    path = service.engine.url.database
    assert path
    return Path(path)


@contextmanager
def write_lock(service: HoldService) -> Iterator[None]:
    """Hold the write lock from another connection, as an import's batch does."""
    other = sqlite3.connect(database_file(service), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("COMMIT")
    finally:
        other.close()


def lock_for(service: HoldService, seconds: float) -> threading.Event:
    """Take the write lock in a thread and keep it ``seconds``; the event is set once taken."""
    taken = threading.Event()

    def hold() -> None:
        with write_lock(service):
            taken.set()
            time.sleep(seconds)

    threading.Thread(target=hold, daemon=True).start()
    return taken


T = TypeVar("T")


def quickly(action: Callable[[], T], limit: float = 0.3) -> T:
    start = time.perf_counter()
    result = action()
    assert time.perf_counter() - start < limit, "waited for the write lock"
    return result


def test_reads_do_not_wait_for_a_writer(service: HoldService, patrons) -> None:
    entry = service.ready("MAIN", "I1", patrons[0].card)
    worker = PrintWorker(service.settings, service.sessions, service.clock)
    worker.run_once()  # the slip is sent: nothing is due any more
    with write_lock(service):
        assert [e.code for e in quickly(lambda: service.shelf("MAIN"))] == [entry.code]
        assert quickly(lambda: service.find(entry.code.display, "MAIN")) == entry
        assert quickly(lambda: service.lookup(entry.code.display))[0].code == entry.code
        quickly(lambda: service.print_status(entry.code, "MAIN"))
        quickly(lambda: service.patron(patrons[0].card))
        quickly(lambda: service.stats())
        quickly(lambda: worker.trouble("MAIN"))
        assert quickly(worker.run_once).sent == 0  # a pass that finds nothing only reads
        with pytest.raises(OperationalError, match="database is locked"):
            service.ready("MAIN", "I2", patrons[1].card)  # a write waits, here for 0.5 s


def test_desk_pages_do_not_wait_for_a_writer(root: Holdshelf, service, clock, patrons) -> None:
    root.accounts.add_user(*STAFF, "staff")
    client = create_app(root).test_client()
    sign_in(client)
    post(client, "/branch", {"branch": "MAIN"})
    made = post(client, "/checkin", {"item": "I1", "card": patrons[0].card})
    assert made.status_code == 302
    clock.advance(seconds=30)  # within a minute: the session's last_seen is not due
    with write_lock(service):
        for path in (made.headers["Location"], "/shelf", "/pickup", "/clear", "/numbers"):
            response = quickly(lambda path=path: client.get(path))
            assert response.status_code == 200, path


def test_the_session_check_writes_once_a_minute(service: HoldService, clock) -> None:
    accounts = Accounts(service.settings, service.sessions, clock)
    accounts.add_user(*STAFF, "staff")
    token = accounts.sign_in(*STAFF, "127.0.0.1")
    clock.advance(seconds=90)
    with write_lock(service), pytest.raises(OperationalError):
        accounts.session(token)  # last_seen is due: this one request writes
    assert accounts.session(token) is not None
    clock.advance(seconds=30)
    with write_lock(service):
        assert quickly(lambda: accounts.session(token)) is not None


def test_a_read_session_refuses_to_write(service: HoldService) -> None:
    reads = database.read_sessions(service.sessions)
    with reads() as session, pytest.raises(database.ReadOnlyViolation):
        session.execute(PrintJob.__table__.delete())


def test_a_printed_slip_is_recorded_once_the_lock_is_free(
    service: HoldService, patrons, monkeypatch, caplog
) -> None:
    """The worker sends a slip while an import holds the lock past the busy timeout: recording
    it is tried again, so it is not printed a second time when its lease runs out."""
    service.ready("MAIN", "I1", patrons[0].card)
    worker = PrintWorker(service.settings, service.sessions, service.clock)
    sent = []
    send = worker.deliver

    def deliver_then_lock(row: PrintJob) -> outbox.Outcome:
        outcome = send(row)
        sent.append(row.id)
        assert lock_for(service, 1.2).wait(5)  # longer than the busy timeout (0.5 s)
        return outcome

    monkeypatch.setattr(worker, "deliver", deliver_then_lock)
    with caplog.at_level(logging.WARNING, logger="holdshelf.outbox"):
        assert worker.run_once().sent == 1
    assert "recording the outcome failed (OperationalError), trying again" in caplog.text
    with service.sessions() as session:
        job = session.scalar(select(PrintJob))
    assert (job.status, job.attempts, job.leased_until) == ("sent", 1, None)
    monkeypatch.setattr(worker, "deliver", send)
    service.clock.advance(minutes=5)  # past the lease: nothing is left to send again
    assert worker.run_once().sent == 0 and len(sent) == 1


def test_recording_gives_up_after_its_tries(service: HoldService, patrons, monkeypatch) -> None:
    """A lock held for longer than every try leaves the row to its lease, as before."""
    monkeypatch.setattr(outbox, "RECORD_ATTEMPTS", 2)
    monkeypatch.setattr(outbox, "RECORD_RETRY_SECONDS", 0.05)
    service.ready("MAIN", "I1", patrons[0].card)
    worker = PrintWorker(service.settings, service.sessions, service.clock)
    send = worker.deliver
    done = threading.Event()

    def deliver_then_lock(row: PrintJob) -> outbox.Outcome:
        outcome = send(row)
        taken = threading.Event()

        def hold() -> None:
            with write_lock(service):
                taken.set()
                done.wait(10)

        threading.Thread(target=hold, daemon=True).start()
        assert taken.wait(5)
        return outcome

    monkeypatch.setattr(worker, "deliver", deliver_then_lock)
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            worker.run_once()
    finally:
        done.set()
    assert worker.delivering is None
    with service.sessions() as session:
        job = session.scalar(select(PrintJob))
    assert job.status == "queued" and job.leased_until is not None
