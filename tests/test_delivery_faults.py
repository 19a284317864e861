"""Exactly once where the printer can tell, at most one extra slip per fault where it cannot.

Every test runs against a real TCP listener playing the printer (tests/helpers/fake_printer.py)
and counts the whole slips it printed. The printer can tell when it still holds the connection:
its process ID response (GS ( H) or its late answer to the status requests says the slip is in.
It cannot tell after the connection is gone (a drop after it read the slip, a worker killed
mid-slip): then the slip prints again, marked POSSIBLE DUPLICATE.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest
from holdshelf.printers import connections
from holdshelf.printers.config import printer_from_table
from sqlalchemy import select

from holdshelf import print_worker
from holdshelf.errors import ConfigError
from holdshelf.print_worker import WAITING, PrintWorker, process_id
from holdshelf.service import HoldService
from holdshelf.storage.models import PrintJob
from tests import test_printing
from tests.conftest import Clock
from tests.helpers.escpos_parser import parse, strip_status_requests
from tests.helpers.fake_printer import FakePrinter
from tests.test_printing import plain_printer

# The same fake TM-T88V on MAIN and the same print worker as tests/test_printing.py.
printer, instance_dir, worker = (
    test_printing.printer,
    test_printing.instance_dir,
    test_printing.worker,
)


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short waits, so a stalled printer is "not answering" within a test's patience."""
    monkeypatch.setattr(connections, "STATUS_TIMEOUT", 0.2)
    monkeypatch.setattr(connections, "RECEIPT_WAIT", 0.3)


def job(service: HoldService) -> PrintJob:
    with service.sessions() as session:
        return session.scalars(select(PrintJob).order_by(PrintJob.id.desc())).first()


def slips(printer: FakePrinter, code: str) -> list:
    """The whole slips printed with ``code``, parsed."""
    with printer._lock:
        printed = list(printer.slips)
    return [parse(slip) for slip in printed if code.encode() in slip]


def marked(slip) -> bool:
    return any(run.inverted and "POSSIBLE DUPLICATE" in run.text for run in slip.texts)


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# -- the printer says it printed -------------------------------------------------------------


def test_each_slip_ends_with_its_process_id_and_prints_once(service, worker, printer, patrons):
    entry = service.ready("MAIN", "I1", patrons[0].card)
    assert worker.run_once().sent == 1
    printer.wait_for_connections(1)
    (slip,) = slips(printer, entry.code.display)
    row = job(service)
    assert slip.process_ids == [row.process_id] == [process_id(row.id, 1)]
    assert (row.status, row.phase) == ("sent", None)
    assert not marked(slip)


def test_process_ids_are_printable_and_differ_between_attempts() -> None:
    ids = {process_id(job, attempt) for job in range(1, 500) for attempt in range(1, 6)}
    assert len(ids) == 499 * 5
    assert all(len(i) == 4 and all(32 <= ord(c) <= 126 for c in i) for i in ids)


def test_replies_sort_status_bytes_from_process_id_responses() -> None:
    replies = connections.Replies()
    replies.feed(b"\x12\x16\x37\x22AB")  # online, paper ok... and half a process ID response
    assert replies.receipts == []
    replies.feed(b"CD\x00\x12\x10\x0f\x00\x00\x37\x22W")  # an ASB block is skipped
    assert replies.receipts == ["ABCD"]
    status = replies.take_status()
    assert status is not None and status.online
    assert replies.take_status() is None


def test_process_ids_only_where_the_profile_answers_them() -> None:
    from tests.test_slips import printer as make_printer

    assert make_printer(type="network", host="h", profile="TM-T88V").process_id
    assert not make_printer(type="network", host="h", profile="").process_id
    assert not make_printer(type="network", host="h", profile="POS-5890").process_id
    assert make_printer(type="network", host="h", profile="", process_id=True).process_id
    assert not make_printer(
        type="network", host="h", profile="TM-T88V", process_id=False
    ).process_id
    assert not make_printer(type="usb", vendor_id=1, product_id=1, process_id=True).process_id
    defaults = make_printer().__dict__
    with pytest.raises(ConfigError, match="process_id"):
        printer_from_table("x", {**_table(defaults), "process_id": "yes"})


def _table(settings: dict) -> dict:
    from tests.test_slips import read_toml, resource_dir

    return read_toml(resource_dir("config") / "default.toml")["printer_defaults"]


def test_a_printer_without_process_ids_is_not_sent_them(tmp_path, database_url, clock, patrons):
    with plain_printer(tmp_path, database_url, clock) as (fake, service, worker):
        service.ready("MAIN", "I1", patrons[0].card)
        assert worker.run_once().sent == 1
        fake.wait_for_connections(1)
        assert parse(strip_status_requests(fake.jobs[0])).process_ids == []


# -- faults the printer can tell: exactly once ----------------------------------------------------


def test_printer_that_stops_reading_then_prints_prints_once(
    service, worker, printer, clock, patrons, quick
) -> None:
    """It took the status check, then stopped reading (cover open) and printed later: the
    worker keeps the connection, sends nothing else to it meanwhile, and never resends."""
    printer.stalls, printer.stall_seconds = 1, 1.0
    first = service.ready("MAIN", "I1", patrons[0].card)
    report = worker.run_once()
    assert report.sent == 0 and report.failed["front-desk"] == WAITING
    assert job(service).phase == "sending"
    second = service.ready("MAIN", "I2", patrons[1].card)
    clock.advance(minutes=1)
    assert worker.run_once().failed["front-desk"] == WAITING  # still stalled: I2 waits too
    assert len(printer.connections) == 0
    wait_until(lambda: printer.printed(first.code.display) == 1)
    time.sleep(0.1)  # its answers follow the slip
    clock.advance(minutes=1)
    assert worker.run_once().sent == 2  # I1 (the printer said so), then I2
    printer.wait_for_connections(2)
    assert printer.printed(first.code.display) == 1 and printer.printed(second.code.display) == 1
    clock.advance(minutes=10)
    assert worker.run_once().sent == 0
    assert not any(marked(s) for s in slips(printer, first.code.display))


def test_a_slip_waiting_for_paper_prints_once(
    service, worker, printer, clock, patrons, quick
) -> None:
    """Its process ID is still to come: the slip is printed late, not sent twice."""
    printer.print_seconds = 0.8  # longer than the worker waits in one pass
    entry = service.ready("MAIN", "I1", patrons[0].card)
    assert worker.run_once().failed["front-desk"] == WAITING
    assert job(service).phase == "accepted"  # it read every byte and said it was online
    wait_until(lambda: worker.run_once().sent == 1)  # once its process ID has come
    assert job(service).status == "sent"
    printer.wait_for_connections(1)
    assert printer.printed(entry.code.display) == 1


def test_a_held_slip_is_not_taken_by_another_worker(
    service, worker, printer, clock, patrons, quick
) -> None:
    printer.stalls, printer.stall_seconds = 1, 1.0
    entry = service.ready("MAIN", "I1", patrons[0].card)
    worker.run_once()
    other = PrintWorker(service.settings, service.sessions, clock)
    clock.advance(seconds=90)
    assert other.run_once().sent == 0
    worker.run_once()  # renews the lease
    clock.advance(seconds=90)
    assert other.run_once().sent == 0
    wait_until(lambda: printer.printed(entry.code.display) == 1)
    time.sleep(0.1)
    assert worker.run_once().sent == 1
    printer.wait_for_connections(1)
    assert printer.printed(entry.code.display) == 1


# -- faults the printer cannot tell: at most one more slip, marked ------------------------------


def test_connection_dropped_after_the_slip_prints_a_marked_copy(
    service, worker, printer, clock, patrons, quick
) -> None:
    printer.drops = 1  # reads the whole slip, then the line goes before it answers
    entry = service.ready("MAIN", "I1", patrons[0].card)
    report = worker.run_once()
    assert "closed the connection" in report.failed["front-desk"]
    assert job(service).phase == "sending"
    clock.advance(minutes=1)
    assert worker.run_once().sent == 1
    printer.wait_for_connections(2)
    first, copy = slips(printer, entry.code.display)
    assert not marked(first) and marked(copy)
    assert "If the item already has a slip with this code, throw this one away." in " ".join(
        copy.lines
    )
    assert copy.qr_payloads == first.qr_payloads == [entry.code.display]
    assert job(service).status == "sent"


def test_printer_that_never_answers_is_given_up_after_the_hold_limit(
    service, worker, printer, clock, patrons, quick, monkeypatch
) -> None:
    """A printer stalled past the hold limit: the slip is sent again (marked), at most one
    extra slip for the fault."""
    monkeypatch.setattr(print_worker, "HOLD_LIMIT", 0.5)
    printer.stalls, printer.stall_seconds = 1, 1.5
    entry = service.ready("MAIN", "I1", patrons[0].card)
    worker.run_once()
    time.sleep(0.6)
    assert "without printing it" in worker.run_once().failed["front-desk"]
    wait_until(lambda: printer.printed(entry.code.display) == 1)
    clock.advance(minutes=1)
    assert worker.run_once().sent == 1
    printer.wait_for_connections(2)
    assert [marked(s) for s in slips(printer, entry.code.display)] == [False, True]


def _deliver_in_child(settings, url: str, clock: Clock) -> None:
    from holdshelf.storage.database import make_engine, session_factory

    engine = make_engine(url)
    PrintWorker(settings, session_factory(engine), clock).run_once()


@pytest.mark.parametrize("stage", ["before the printer answered", "waiting for the process ID"])
def test_worker_killed_mid_slip(service, printer, clock, patrons, stage) -> None:
    """SIGKILL while the printer has the whole slip and the worker has not recorded it.
    Before the printer's status answer: sent again, marked (at least once). While waiting
    for the process ID (it had read all of it and said it was online): not sent again."""
    if stage == "before the printer answered":
        printer.late_after_slip = 5.0  # the status answers after the slip come late
        printer.process_ids = False
    else:
        printer.print_seconds = 5.0
    entry = service.ready("MAIN", "I1", patrons[0].card)
    service.engine.dispose()
    url = service.settings.database_url
    child = multiprocessing.get_context("fork").Process(
        target=_deliver_in_child, args=(service.settings, url, clock)
    )
    child.start()
    try:
        assert printer.whole_slip.wait(10)
        want = "sending" if stage == "before the printer answered" else "accepted"
        wait_until(lambda: job(service).phase == want)
        time.sleep(0.1)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(5)
    printer.late_after_slip = printer.print_seconds = 0.0
    printer.process_ids = True
    clock.advance(minutes=3)  # the dead worker's lease runs out
    assert PrintWorker(service.settings, service.sessions, clock).run_once().sent == 1
    assert job(service).status == "sent"
    copies = 2 if stage == "before the printer answered" else 1
    wait_until(lambda: printer.printed(entry.code.display) == copies)
    printed = slips(printer, entry.code.display)
    assert [marked(s) for s in printed] == [False, True][:copies]
