"""SQLite's one write lock: reads never wait for it, and a slip's outcome is recorded even when
another process holds it for a while. Each test holds the lock for real, from a second
connection, as `holdshelf import` or another app server would."""

from __future__ import annotations

import gc
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import Engine, event, select
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


# -- the threads of one process take turns to write -----------------------------------------


@contextmanager
def traced_engine(service: HoldService) -> Iterator[tuple[Engine, list[str]]]:
    """A new engine on the service's database, and every statement its connections began (the
    driver's own trace: the tries at the lock that failed too)."""
    engine = database.make_engine(str(service.engine.url))
    began: list[str] = []
    event.listen(engine, "connect", lambda dbapi, _record: dbapi.set_trace_callback(began.append))
    try:
        yield engine, began
    finally:
        engine.dispose()


def test_a_writer_waits_for_its_turn_without_polling(service: HoldService) -> None:
    """While one thread's write transaction is open, another thread's waits for its turn, and
    begins once, the moment the first ends: it does not try SQLite's lock every millisecond
    (which lost up to two at every hand-over, and kept every waiting thread busy)."""
    with traced_engine(service) as (engine, began):
        holding, release = threading.Event(), threading.Event()
        second_began: list[float] = []

        def first() -> None:
            with engine.begin():
                holding.set()
                release.wait(5)

        def second() -> None:
            with engine.begin():
                second_began.append(time.perf_counter())

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        threads[0].start()
        assert holding.wait(5)
        threads[1].start()
        time.sleep(0.2)
        assert not second_began  # still waiting
        released = time.perf_counter()
        release.set()
        for thread in threads:
            thread.join(5)
        assert second_began and second_began[0] - released < 0.1
        assert began.count("BEGIN IMMEDIATE") == 2, began.count("BEGIN IMMEDIATE")


def test_every_way_a_write_transaction_ends_gives_up_the_turn(service: HoldService) -> None:
    with traced_engine(service) as (engine, _began):
        with pytest.raises(ZeroDivisionError), engine.begin():
            1 / 0  # noqa: B018 (rolled back by the error)
        connection = engine.connect()
        connection.begin()
        connection.close()  # without a commit: rolled back
        connection = engine.connect()
        connection.begin()
        connection.invalidate()  # the connection lost inside the transaction
        connection = engine.connect()
        connection.begin()
        del connection  # dropped inside the transaction: the pool takes it back, rolled back
        gc.collect()
        for _ in range(3):
            with quickly(engine.begin) as writing:
                writing.exec_driver_sql("CREATE TABLE IF NOT EXISTS turns (n INTEGER)")


def test_a_turn_held_past_the_busy_timeout_is_a_locked_database(service: HoldService) -> None:
    """As SQLite's lock held by another process: the write fails as a transient error, the
    kind a worker tries again (database.transient), after the busy timeout, not for ever."""
    with traced_engine(service) as (engine, _began):
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with engine.begin():
                holding.set()
                release.wait(10)

        thread = threading.Thread(target=hold)
        thread.start()
        try:
            assert holding.wait(5)
            start = time.perf_counter()
            with pytest.raises(OperationalError, match="database is locked") as raised:
                engine.connect().begin()
            assert database.transient(raised.value)
            assert BUSY_TIMEOUT_MS / 1000 <= time.perf_counter() - start < 5
        finally:
            release.set()
            thread.join(5)
        with quickly(engine.begin):
            pass
